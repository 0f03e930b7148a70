// Tidy: keeps the style habits as the code grows — no `any`, no @ts-ignore, no console.log
// (logs go through consola), and imports point down: src/cmd -> roles -> src/{proto,store};
// one role folder never imports another, and proto/store import no role.
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const src = join(import.meta.dir, "..", "src");

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
}

const ROLES = ["mdm", "sds", "sdc"];
const LOWER = ["proto", "store"];

test("no any, ts-ignore or console.log in src", () => {
  const bad: string[] = [];
  for (const f of files(src)) {
    const lines = readFileSync(f, "utf8").split("\n");
    lines.forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, "");
      if (/(:\s*any\b|<any>|as any\b|any\[\])/.test(code)) bad.push(`${relative(src, f)}:${i + 1}: any`);
      if (/@ts-ignore|@ts-nocheck/.test(line)) bad.push(`${relative(src, f)}:${i + 1}: ts-ignore`);
      if (/\bconsole\.(log|error|warn|info)\(/.test(code)) bad.push(`${relative(src, f)}:${i + 1}: console`);
    });
  }
  expect(bad).toEqual([]);
});

test("imports point down the layers", () => {
  const bad: string[] = [];
  for (const f of files(src)) {
    const folder = relative(src, f).split("/")[0]!;
    for (const m of readFileSync(f, "utf8").matchAll(/from\s+"(\.[^"]+)"/g)) {
      const target = relative(src, join(f, "..", m[1]!)).split("/")[0]!;
      if (target === folder) continue;
      const ok =
        (folder === "cmd" && [...ROLES, ...LOWER].includes(target)) ||
        (ROLES.includes(folder) && LOWER.includes(target)) ||
        (folder === "store" && target === "proto") ||
        (folder === "cmd" && m[1]!.endsWith(".yaml")); // embedded default cluster file
      if (!ok) bad.push(`${relative(src, f)} imports ${m[1]}`);
    }
  }
  expect(bad).toEqual([]);
});
