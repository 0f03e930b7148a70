// Shared steps of the fault-injection suites: a verifying fio job that can be re-run as a pure
// verification later, polling the pool's health through scli, and the consistency check.

import { expect } from "bun:test";

export type Scli = (args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

/** fio arguments of a write job with crc32c verification (same args + --verify_only re-checks). */
export function verifyJob(uri: string, opts: { name?: string; sizeMiB: number; offsetMiB?: number; bs?: string; qd?: number; rateIops?: number }): string[] {
  return [
    `--name=${opts.name ?? "fault"}`,
    "--ioengine=nbd",
    `--uri=${uri}`,
    "--rw=randwrite",
    `--bs=${opts.bs ?? "16k"}`,
    `--iodepth=${opts.qd ?? 8}`,
    `--offset=${opts.offsetMiB ?? 0}M`,
    `--size=${opts.sizeMiB}M`,
    "--verify=crc32c",
    "--do_verify=1",
    "--verify_fatal=1",
    "--verify_state_save=0",
    "--randrepeat=1",
    ...(opts.rateIops ? [`--rate_iops=${opts.rateIops}`] : []),
  ];
}

export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | null | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await Bun.sleep(250);
  }
}

export interface PoolView {
  [key: string]: unknown;
  statistics?: Record<string, unknown>;
}

export async function poolJson(scli: Scli): Promise<PoolView> {
  const r = await scli(["--query_storage_pool", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1", "--json"]);
  if (r.code !== 0) throw new Error(`scli --query_storage_pool failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as PoolView;
}

/** The pool has every extent on two in-sync copies and no copy under way. */
export function poolHealthy(p: PoolView): boolean {
  const s = p.statistics ?? {};
  const state = String(p.rebuildState ?? s.rebuildState ?? "");
  const degraded = Number(s.degradedCapacityInKb ?? p.degradedCapacityInKb ?? 0);
  const pending = Number(s.pendingRebuildCapacityInKb ?? p.pendingRebuildCapacityInKb ?? 0);
  return (state === "" || state === "Normal" || state === "Idle") && degraded === 0 && pending === 0;
}

export async function waitPoolHealthy(scli: Scli, timeoutMs: number): Promise<PoolView> {
  return waitFor("the pool to have two copies of every extent again", timeoutMs, async () => {
    const p = await poolJson(scli);
    return poolHealthy(p) ? p : null;
  });
}

export async function waitPoolDegraded(scli: Scli, timeoutMs: number): Promise<PoolView> {
  return waitFor("the pool to notice the lost copies", timeoutMs, async () => {
    const p = await poolJson(scli);
    return poolHealthy(p) ? null : p;
  });
}

export async function expectIdentical(scli: Scli, volume: string): Promise<void> {
  const r = await scli(["--check_volume_consistency", "--volume_name", volume]);
  expect(r.stdout + r.stderr).toContain("identical");
  expect(r.code).toBe(0);
}
