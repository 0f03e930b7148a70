// `promtool check metrics` / `check rules` for tests: exit status and findings. promtool
// (Debian package prometheus) is required: without it these throw, so tests fail, never skip.

import { spawnSync } from "node:child_process";

export function promtoolMetrics(text: string): { code: number; findings: string } {
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8", maxBuffer: 256 * 1024 * 1024 });
  if (r.error !== undefined) throw new Error(`promtool is required (apt-get install -y prometheus): ${r.error.message}`);
  return { code: r.status ?? -1, findings: `${r.stderr}${r.stdout}`.trim() };
}

export function promtoolRules(file: string): { code: number; output: string } {
  const r = spawnSync("promtool", ["check", "rules", file], { encoding: "utf8" });
  if (r.error !== undefined) throw new Error(`promtool is required (apt-get install -y prometheus): ${r.error.message}`);
  return { code: r.status ?? -1, output: `${r.stderr}${r.stdout}`.trim() };
}

export function promtoolConfig(file: string): { code: number; output: string } {
  const r = spawnSync("promtool", ["check", "config", "--syntax-only", file], { encoding: "utf8" });
  if (r.error !== undefined) throw new Error(`promtool is required (apt-get install -y prometheus): ${r.error.message}`);
  return { code: r.status ?? -1, output: `${r.stderr}${r.stdout}`.trim() };
}

/** Sample value of `name{labels...}` in exposition text (labels matched as given substrings). */
export function sampleValue(text: string, name: string, ...labelParts: string[]): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!labelParts.every((p) => line.includes(p))) continue;
    return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}
