// Fuzzing a running cluster (dist/pf: 3 SDSs, 1 SDC, 1 MDM on loopback) the way bench/fuzz.ts
// does, with a small budget: per target a fixed seed and a random one that is printed
// (FUZZ_SEED=<seed> replays it; bench/fuzz.ts --seed runs 100k). Targets: the SDC's NBD server
// (handshake and transmission), the SDS data plane before and after the handshake, the MDM's
// REST API with a valid token (last: it may unmap or resize fzplay). Each target must end with
// 0 findings: every role alive and answering /health and valid IO, every case's connection
// closed by the server within 5 s of our FIN, no INTERNAL REST error. The corpus of inputs that
// once broke something is replayed first; the pattern written into fzkeep before any of it
// must read back unchanged at the end.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { corpusOf } from "./helpers/fuzz_corpus.ts";
import { dataplaneTarget, type DpCase } from "./helpers/fuzz_dataplane.ts";
import { FuzzEnv } from "./helpers/fuzz_env.ts";
import { nbdCaseFromJson, nbdTarget } from "./helpers/fuzz_nbd.ts";
import { RestSession, cleanupRest, restTarget, type RestCase } from "./helpers/fuzz_rest.ts";
import { runTarget, type Target } from "./helpers/fuzz_run.ts";

const FIXED_SEED = 20261201;
const RANDOM_SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31);
const FIXED_CASES = 2000;
const RANDOM_CASES = 1000;
console.info(`fuzz: seeds ${FIXED_SEED} (${FIXED_CASES} cases a target) and ${RANDOM_SEED} (${RANDOM_CASES}); FUZZ_SEED=<seed> replays the second`);

let env: FuzzEnv;
let session: RestSession;

beforeAll(async () => {
  env = await FuzzEnv.start();
  session = new RestSession(env);
  await session.login();
});

afterAll(async () => {
  await env?.stop();
});

async function fuzz<C>(t: Target<C>, liveness = (p: number) => env.liveness(p)): Promise<void> {
  for (const [seed, cases] of [
    [FIXED_SEED, FIXED_CASES],
    [RANDOM_SEED, RANDOM_CASES],
  ] as const) {
    const s = await runTarget(t, { cases, seed, concurrency: 8, livenessEvery: 500, liveness, quickCheck: () => env.deadRoles().join(", "), maxFindings: 5 });
    console.info(`fuzz ${t.name}: seed ${seed}: ${s.cases} cases in ${(s.durationMs / 1000).toFixed(1)} s, slowest ${s.maxCaseMs.toFixed(0)} ms, ${s.findings.length} findings`);
    expect(s.findings.map((f) => `${f.detail} (input: ${JSON.stringify(f.input)?.slice(0, 600)})`)).toEqual([]);
    expect(s.cases).toBe(cases);
  }
}

async function replay<C>(t: Target<C>, inputs: { file: string; input: C }[]): Promise<void> {
  for (const { file, input } of inputs) expect(`${file}: ${await t.exec(input)}`).toBe(`${file}: `);
  expect(await env.liveness(0)).toBe("");
}

test("corpus: every socket and REST input that once broke something passes now", async () => {
  await replay(nbdTarget(env), corpusOf<Parameters<typeof nbdCaseFromJson>[0]>("nbd").map((e) => ({ file: e.file, input: nbdCaseFromJson(e.input) })));
  await replay(dataplaneTarget(env, "dataplane"), corpusOf<DpCase>("dataplane"));
  await replay(dataplaneTarget(env, "dataplane-auth"), corpusOf<DpCase>("dataplane-auth"));
  await replay(restTarget(env, session), corpusOf<RestCase>("rest"));
});

test("NBD server: handshake and transmission cases crash nothing, hang nothing", async () => {
  await fuzz(nbdTarget(env));
});

test("data plane before authentication: HELLO/AUTH variants and junk crash nothing, hang nothing", async () => {
  await fuzz(dataplaneTarget(env, "dataplane"));
});

test("data plane after authentication: mutated frames under a real grant crash nothing, hang nothing", async () => {
  await fuzz(dataplaneTarget(env, "dataplane-auth"));
});

test("REST API with a valid token: mutated paths, queries, content types and bodies give no INTERNAL error", async () => {
  await fuzz(restTarget(env, session), async (p) => {
    await cleanupRest(env, session);
    return env.liveness(p);
  });
});

test("the pattern written into fzkeep before the fuzzing reads back unchanged", async () => {
  expect(await env.verifyPattern()).toEqual({ pieces: 8, bad: 0 });
});
