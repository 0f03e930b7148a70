// `pf doctor [cluster.yaml] [--host NAME] [--data-dir DIR] [--json]`: checks this host before
// deploying, or when something is wrong, and prints one row per check (ok / info / warning /
// failed) with the fix. It changes nothing: its only writes are test files it removes again.
// Exit status 0 when no check failed, DOCTOR_FAILED_EXIT when one did (the README's table);
// a bad command line or cluster file fails like every other pf command.

import { defineCommand } from "citty";
import { resolve } from "node:path";
import { clockChecks } from "./doctor_clock.ts";
import { clusterChecks } from "./doctor_cluster.ts";
import { CheckStatuses, type Check, type CheckStatus } from "./doctor_check.ts";
import { fileSystemChecks } from "./doctor_fs.ts";
import { dataDirCheck, deviceChecks, portChecks, spaceChecks } from "./doctor_local.ts";
import { findThisHost, loadClusterConfig, planHost, type HostPlan } from "./host_plan.ts";

/** Exit status when at least one check failed (distinct from every error kind's status). */
export const DOCTOR_FAILED_EXIT = 8;

export const doctorCommand = defineCommand({
  meta: { name: "doctor", description: "Check this host for a cluster file: ports, disks, clock, MDM, roles, NBD (exit 0 when nothing failed)" },
  args: {
    config: { type: "positional", description: "cluster YAML (default: built-in one-host cluster)", required: false },
    "data-dir": { type: "string", description: "Data dir pf up uses on this host", default: "./pf-data" },
    host: { type: "string", description: "Which host of the file this is (default: match by name or address)" },
    json: { type: "boolean", description: "Print the checks as JSON", default: false },
  },
  async run({ args }) {
    const { config, fileName } = loadClusterConfig(args.config ? String(args.config) : undefined);
    const host = findThisHost(config, args.host, fileName);
    const plan = planHost(config, host, resolve(args["data-dir"]), fileName);
    const checks = await runChecks(plan);
    const counts = countByStatus(checks);
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ host: host.name, file: fileName, dataDir: plan.dataDir, checks, summary: counts }, null, 2)}\n`);
    } else {
      process.stdout.write(renderTable(plan, checks, counts));
    }
    if (counts.failed > 0) process.exit(DOCTOR_FAILED_EXIT);
  },
});

export async function runChecks(plan: HostPlan): Promise<Check[]> {
  return [
    ...(await portChecks(plan)),
    dataDirCheck(plan),
    ...deviceChecks(plan),
    ...spaceChecks(plan),
    ...fileSystemChecks(plan),
    ...(await clockChecks()),
    ...(await clusterChecks(plan)),
  ];
}

function countByStatus(checks: Check[]): Record<CheckStatus, number> {
  const counts = Object.fromEntries(CheckStatuses.map((s) => [s, 0])) as Record<CheckStatus, number>;
  for (const c of checks) counts[c.status]++;
  return counts;
}

const STATUS_TEXT: Record<CheckStatus, string> = { ok: "ok", info: "info", warning: "WARNING", failed: "FAILED" };

function renderTable(plan: HostPlan, checks: Check[], counts: Record<CheckStatus, number>): string {
  const nameWidth = Math.min(48, Math.max(...checks.map((c) => c.name.length)));
  const lines = [`pf doctor: host ${plan.host.name} of ${plan.fileName}, data dir ${plan.dataDir}`, ""];
  lines.push(`${"STATUS".padEnd(8)} ${"CHECK".padEnd(nameWidth)}  DETAIL`);
  for (const c of checks) {
    lines.push(`${STATUS_TEXT[c.status].padEnd(8)} ${c.name.padEnd(nameWidth)}  ${c.detail}`);
    if (c.fix && c.status !== "ok") lines.push(`${"".padEnd(8)} ${"".padEnd(nameWidth)}  fix: ${c.fix}`);
  }
  lines.push("", `${counts.ok} ok, ${counts.info} info, ${counts.warning} warning(s), ${counts.failed} failed`);
  return `${lines.join("\n")}\n`;
}
