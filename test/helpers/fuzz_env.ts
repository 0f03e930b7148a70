// The cluster a fuzz run attacks: a real `pf up` (dist/pf) with 3 SDSs and 1 SDC on loopback,
// three volumes and a "member" SDC played by the fuzzer:
// - fzkeep: a known pattern written before the run, checked byte for byte after it; mapped to
//   the real SDC only (the fuzzer's SDC has no grant for it, so every frame naming it must be
//   refused), and never named by the NBD or REST generators;
// - fzplay: the volume the fuzzer may write at will (NBD export of the SDC, and mapped
//   ReadWrite to the fuzzer's own SDC for the authenticated data plane);
// - fzlive: the liveness probe's scratch volume (a write then a read-back through NBD).
// Liveness = every role's PID alive, /health 200 on every control port, the MDM's role path
// answering, a valid NBD write+read and a valid data-plane READ. Everything is stopped by PID.

import { readFileSync } from "node:fs";
import { idToHalves } from "../../src/proto/ids.ts";
import type { VolumeMap } from "../../src/proto/cluster_api.ts";
import { TestCluster } from "./cluster.ts";
import { NbdTestClient } from "./nbd_client.ts";
import { RogueSdc, adminEndpoint, idOf, rest, Op, Status } from "./rogue_sdc.ts";

export const KEEP = "fzkeep";
export const PLAY = "fzplay";
export const LIVE = "fzlive";
const MiB = 1024 * 1024;
export const VOLUME_BYTES = 64 * MiB;
export const EXTENT_BYTES = 16 * MiB;
/** pattern pieces of fzkeep: 256 KiB at the start of every extent and in its middle */
const PATTERN_PIECES = [0, 8, 16, 24, 32, 40, 48, 56].map((m) => m * MiB);
const PIECE_BYTES = 256 * 1024;

export function patternBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export interface Ids {
  play: { hi: number; lo: number; id: string };
  keep: { hi: number; lo: number; id: string };
  poolId: string;
  pdId: string;
  rogueSdcId: string;
}

export class FuzzEnv {
  rogue!: RogueSdc;
  playMap!: VolumeMap;
  /** fzlive as the fuzzer's SDC sees it (the liveness probe's data-plane READ; no generator names it) */
  liveMap!: VolumeMap;
  ids!: Ids;
  admin!: Awaited<ReturnType<typeof adminEndpoint>>;
  caPem = "";
  private pids: Record<string, number> = {};
  private refreshedAtMs = 0;

  private constructor(readonly cluster: TestCluster) {}

  static async start(): Promise<FuzzEnv> {
    const c = await TestCluster.create({
      sdsCount: 3,
      deviceSize: "512MiB",
      extentSize: "16MiB",
      granularity: "64MiB",
      volumes: [
        { name: KEEP, size: "64MiB" },
        { name: PLAY, size: "64MiB" },
        { name: LIVE, size: "64MiB" },
      ],
    });
    const env = new FuzzEnv(c);
    try {
      await c.start();
      await env.setup();
    } catch (e) {
      await c.destroy();
      throw e;
    }
    return env;
  }

  private async setup(): Promise<void> {
    const c = this.cluster;
    this.caPem = readFileSync(c.caFile, "utf8");
    for (const label of ["mdm", "sds sds1", "sds sds2", "sds sds3", "sdc"]) this.pids[label] = c.pidOf(label);
    this.admin = await adminEndpoint(c);
    this.rogue = await RogueSdc.join(c, "fuzz-sdc");
    const playId = await idOf(this.admin, "Volume", PLAY);
    const keepId = await idOf(this.admin, "Volume", KEEP);
    await rest(this.admin, "POST", `/instances/Volume::${playId}/action/addMappedSdc`, { sdcId: this.rogue.sdcId, accessMode: "ReadWrite", allowMultipleMappings: "TRUE" });
    const liveId = await idOf(this.admin, "Volume", LIVE);
    await rest(this.admin, "POST", `/instances/Volume::${liveId}/action/addMappedSdc`, { sdcId: this.rogue.sdcId, accessMode: "ReadOnly", allowMultipleMappings: "TRUE" });
    await this.rogue.refresh();
    const vm = this.rogue.volume(PLAY);
    const lm = this.rogue.volume(LIVE);
    if (!vm || !lm) throw new Error(`${PLAY} or ${LIVE} is not in the fuzz SDC's maps after mapping it`);
    this.playMap = vm;
    this.liveMap = lm;
    this.refreshedAtMs = Date.now();
    this.ids = {
      play: { ...idToHalves(playId), id: playId },
      keep: { ...idToHalves(keepId), id: keepId },
      poolId: await idOf(this.admin, "StoragePool", "sp1"),
      pdId: await idOf(this.admin, "ProtectionDomain", "pd1"),
      rogueSdcId: this.rogue.sdcId,
    };
    await this.writePattern();
  }

  get nbdPort(): number {
    return this.cluster.ports.nbd;
  }
  get sdsPorts(): number[] {
    return this.cluster.ports.sds;
  }
  /** data-plane port of the SDS holding the primary copy of fzplay's extent `index` */
  primaryPortOf(index: number): number {
    const ext = this.playMap.extents[index % this.playMap.extents.length]!;
    const a = this.rogue.maps!.sds!.find((s) => s.sdsId === ext.replicas[0]);
    if (!a) throw new Error(`no address for SDS ${ext.replicas[0]}`);
    return a.port;
  }
  epochOf(index: number): number {
    return this.playMap.extents[index % this.playMap.extents.length]?.epoch ?? 0;
  }

  private async writePattern(): Promise<void> {
    const n = await NbdTestClient.connect(this.nbdPort, KEEP);
    try {
      for (const [i, at] of PATTERN_PIECES.entries()) await n.write(at, patternBytes(PIECE_BYTES, i + 1));
      await n.flush();
    } finally {
      n.close();
    }
  }

  /** fzkeep still holds the pattern written before the run: the count of differing pieces. */
  async verifyPattern(): Promise<{ pieces: number; bad: number }> {
    const n = await NbdTestClient.connect(this.nbdPort, KEEP);
    let bad = 0;
    try {
      for (const [i, at] of PATTERN_PIECES.entries()) {
        const got = await n.read(at, PIECE_BYTES);
        if (!Buffer.from(got).equals(Buffer.from(patternBytes(PIECE_BYTES, i + 1)))) bad++;
      }
    } finally {
      n.close();
    }
    return { pieces: PATTERN_PIECES.length, bad };
  }

  /**
   * Lines the roles logged since the last call that show a bug rather than a refused input: an
   * exception escaping a request handler (the SDS closes that connection and logs "request
   * handling failed"), an uncaught error, a broken invariant.
   */
  bugLines(): string[] {
    const out = this.cluster.output;
    const fresh = out.slice(this.logSeen);
    this.logSeen = out.length;
    return fresh.split("\n").filter((l) => BUG_LINE.test(l)).map((l) => l.slice(0, 400));
  }
  private logSeen = 0;

  /** Every role's process still there (cheap: a signal 0 per PID). Returns the dead ones. */
  deadRoles(): string[] {
    const dead: string[] = [];
    for (const [label, pid] of Object.entries(this.pids)) {
      try {
        process.kill(pid, 0);
      } catch {
        dead.push(`${label} (pid ${pid})`);
      }
    }
    return dead;
  }

  /** Full liveness: PIDs, /health, the MDM, a valid NBD write+read on fzlive, a valid data-plane READ. "" = alive. */
  async liveness(probe: number): Promise<string> {
    const dead = this.deadRoles();
    if (dead.length > 0) return `role process gone: ${dead.join(", ")}`;
    const bugs = this.bugLines();
    if (bugs.length > 0) return `internal: the roles logged ${bugs.length} error line(s), the first: ${bugs[0]}`;
    const c = this.cluster;
    const urls = [...c.ports.sdsControl.map((_, i) => c.sdsControlUrl(i)), c.sdcControlUrl];
    for (const u of urls) {
      const h = await healthy(u);
      if (h !== "") return h;
    }
    const m = await fetch(`${c.mdmUrl}/api/pf/mdmRole`, { tls: { ca: this.caPem }, signal: AbortSignal.timeout(5000) }).catch((e: Error) => e);
    if (m instanceof Error) return `MDM: ${m.message}`;
    if (m.status !== 200) return `MDM: HTTP ${m.status}`;
    const io = await withTimeout(this.nbdProbe(probe), 10_000, "NBD write+read on fzlive");
    if (io !== "") return io;
    if (Date.now() - this.refreshedAtMs > 60_000) {
      // grants live Limits.grantTtlMs: fetch fresh ones (and the map) as the real SDC does
      await this.rogue.refresh();
      this.playMap = this.rogue.volume(PLAY) ?? this.playMap;
      this.liveMap = this.rogue.volume(LIVE) ?? this.liveMap;
      this.refreshedAtMs = Date.now();
    }
    const vm = this.liveMap;
    const rd = await withTimeout(this.rogue.request(vm, Op.READ, (probe % 4) * EXTENT_BYTES, 4096).then((r) => (r.status === Status.OK ? "" : `data-plane READ of ${LIVE}: status ${r.status}`)), 10_000, "data-plane READ");
    return rd;
  }

  private async nbdProbe(probe: number): Promise<string> {
    const n = await NbdTestClient.connect(this.nbdPort, LIVE);
    try {
      const at = (probe % 1024) * 4096;
      const data = patternBytes(4096, probe + 1000);
      await n.write(at, data);
      const got = await n.read(at, 4096);
      return Buffer.from(got).equals(Buffer.from(data)) ? "" : `NBD read-back of ${LIVE} @${at} differs`;
    } finally {
      n.close();
    }
  }

  /** RSS of every role in KiB (from /proc). */
  rssKiB(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [label, pid] of Object.entries(this.pids)) {
      try {
        const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
        out[label] = m ? Number(m[1]) : 0;
      } catch {
        out[label] = 0;
      }
    }
    return out;
  }

  async stop(): Promise<void> {
    this.rogue?.close();
    await this.cluster.destroy();
  }
}

/**
 * GET /health until 200, for up to 10 s: a role may be briefly unready for a good reason (the
 * SDC fetching a map the REST cases just changed: "maps stale"); one that stays so is a finding.
 */
async function healthy(url: string): Promise<string> {
  const end = Date.now() + 10_000;
  for (;;) {
    const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(5000) }).catch((e: Error) => e);
    const why = r instanceof Error ? `${url}/health: ${r.message}` : r.status === 200 ? "" : `${url}/health: HTTP ${r.status} ${await r.text()}`;
    if (why === "" || Date.now() > end) return why === "" ? "" : `${why} (for 10 s)`;
    await Bun.sleep(200);
  }
}

const BUG_LINE = /request handling failed|TypeError|RangeError|ReferenceError|SyntaxError|unhandled|uncaught|invariant broken|assertion|internal error|panic|segmentation/i;

export async function withTimeout(p: Promise<string>, ms: number, what: string): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<string>((res) => (timer = setTimeout(() => res(`${what}: no answer within ${ms} ms`), ms)));
  try {
    return await Promise.race([p.catch((e: Error) => `${what}: ${e.message}`), t]);
  } finally {
    clearTimeout(timer);
  }
}
