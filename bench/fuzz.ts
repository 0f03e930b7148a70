// Standalone fuzzer: `bun bench/fuzz.ts --target nbd|dataplane|dataplane-auth|rest|yaml --cases N --seed S`
// (npm run build first: the socket and REST targets run against dist/pf). Starts a one-host
// cluster on free loopback ports (test/helpers/fuzz_env.ts), writes a pattern into fzkeep, runs
// the cases (test/helpers/fuzz_*.ts) with the cluster's liveness checked every --liveness-every
// cases, then checks the pattern. Prints cases, duration, findings; writes the findings with
// their inputs to --out (default fuzz-findings-<target>.json) for test/fuzz_corpus/. Exit 1 on
// any finding.

import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { dataplaneTarget, dpProbeStats } from "../test/helpers/fuzz_dataplane.ts";
import { FuzzEnv } from "../test/helpers/fuzz_env.ts";
import { nbdTarget, probeStats } from "../test/helpers/fuzz_nbd.ts";
import { RestSession, cleanupRest, restStatusCounts, restTarget } from "../test/helpers/fuzz_rest.ts";
import { runTarget, wireTotals, type RunStats, type Target } from "../test/helpers/fuzz_run.ts";
import { yamlTarget } from "../test/helpers/fuzz_yaml.ts";

const TARGETS = ["nbd", "dataplane", "dataplane-auth", "rest", "yaml"] as const;
type TargetName = (typeof TARGETS)[number];

const { values: a } = parseArgs({
  options: {
    target: { type: "string" },
    cases: { type: "string", default: "100000" },
    seed: { type: "string" },
    concurrency: { type: "string", default: "8" },
    "liveness-every": { type: "string", default: "500" },
    out: { type: "string" },
  },
});
const out = (s: string) => process.stdout.write(`${s}\n`);
const target = a.target as TargetName;
if (!TARGETS.includes(target)) {
  process.stderr.write(`bench/fuzz.ts: --target must be one of ${TARGETS.join(", ")}\n`);
  process.exit(2);
}
const cases = Number(a.cases);
const seed = a.seed !== undefined ? Number(a.seed) : Math.floor(Math.random() * 2 ** 31);
const concurrency = Number(a.concurrency);
if (!Number.isInteger(cases) || cases < 1 || !Number.isInteger(seed) || !Number.isInteger(concurrency) || concurrency < 1) {
  process.stderr.write("bench/fuzz.ts: --cases, --seed and --concurrency are positive integers\n");
  process.exit(2);
}
out(`fuzz ${target}: ${cases} cases, seed ${seed}, concurrency ${target === "yaml" ? 1 : concurrency}`);

let stats: RunStats;
let verify = "";
let rss = "";
if (target === "yaml") {
  stats = await runTarget(yamlTarget(), { cases, seed, concurrency: 1, livenessEvery: cases, liveness: async () => "", progressEvery: 10_000, log: out });
} else {
  const env = await FuzzEnv.start();
  // Ctrl-C / kill: stop the cluster's processes too (pf up and its roles), by PID
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      void env.stop().finally(() => process.exit(130));
    });
  }
  try {
    const rssBefore = env.rssKiB();
    let t: Target<unknown>;
    let liveness = (p: number) => env.liveness(p);
    if (target === "nbd") t = nbdTarget(env) as Target<unknown>;
    else if (target === "rest") {
      const session = new RestSession(env);
      await session.login();
      t = restTarget(env, session) as Target<unknown>;
      liveness = async (p) => {
        await cleanupRest(env, session);
        return env.liveness(p);
      };
    } else t = dataplaneTarget(env, target) as Target<unknown>;
    stats = await runTarget(t, {
      cases,
      seed,
      concurrency,
      livenessEvery: Number(a["liveness-every"]),
      liveness,
      quickCheck: () => env.deadRoles().join(", "),
      progressEvery: 5000,
      log: out,
    });
    const v = await env.verifyPattern();
    verify = `pattern of fzkeep: ${v.pieces - v.bad}/${v.pieces} pieces intact`;
    if (v.bad > 0) stats.findings.push({ target, kind: "corruption", caseNo: cases, detail: `corruption: ${v.bad} of ${v.pieces} pattern pieces of fzkeep differ`, input: null });
    const rssAfter = env.rssKiB();
    rss = Object.keys(rssAfter).map((k) => `${k} ${Math.round((rssBefore[k] ?? 0) / 1024)}→${Math.round((rssAfter[k] ?? 0) / 1024)} MiB`).join(", ");
  } finally {
    await env.stop();
  }
}

out(`fuzz ${target}: ${stats.cases} cases in ${(stats.durationMs / 1000).toFixed(1)} s (${((stats.cases / stats.durationMs) * 1000).toFixed(0)}/s), slowest case ${stats.maxCaseMs.toFixed(0)} ms, ${stats.livenessChecks} liveness checks, seed ${seed}`);
if (stats.maxCaseMs > 1000) out(`slowest case: ${JSON.stringify(stats.slowest)?.slice(0, 300)}`);
if (wireTotals.conns > 0) out(`connections: ${wireTotals.conns}, answered ${wireTotals.connsAnswered}, closed by the server before our FIN ${wireTotals.closedByServer}, ${(wireTotals.bytesIn / 1048576).toFixed(1)} MiB received`);
if (restStatusCounts.size > 0) out(`HTTP statuses: ${[...restStatusCounts.entries()].sort((x, y) => x[0] - y[0]).map(([k, n]) => `${k}×${n}`).join(" ")}`);
if (probeStats.sent > 0) out(`probe READs after the case's requests: ${probeStats.sent} sent, ${probeStats.answered} answered, ${probeStats.closed} met a closed connection`);
if (dpProbeStats.sent > 0) out(`probe PINGs after the case's frames: ${dpProbeStats.sent} sent, ${dpProbeStats.answered} answered, ${dpProbeStats.closed} met a closed connection`);
if (verify) out(verify);
if (rss) out(`RSS: ${rss}`);
out(`findings: ${stats.findings.length}`);
for (const f of stats.findings) out(`  ${f.kind} case ${f.caseNo}: ${f.detail.slice(0, 400)}`);
const file = a.out ?? `fuzz-findings-${target}.json`;
if (stats.findings.length > 0) {
  writeFileSync(file, JSON.stringify(stats.findings, null, 1));
  out(`findings with inputs written to ${file}`);
}
process.exit(stats.findings.length > 0 ? 1 : 0);
