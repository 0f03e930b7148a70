// Test harness for HA mode: runs Debian's etcd binary (1 or 3 members) with temp data dirs, free
// loopback ports, --unsafe-no-fsync (CI only, never in production) and the transaction limits pf
// needs (--max-txn-ops 10000, --max-request-bytes 4 MiB). A missing etcd fails the test (CI
// installs etcd-server); it never skips. Every member is killed by PID with SIGKILL in stop(),
// pass or fail (an etcd without quorum ignores SIGTERM for many seconds). PF_ETCD_LOG_DIR keeps
// the members' own logs.

import { mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort } from "./cluster.ts";
import { EtcdMetaStore } from "../../src/mdm/ha/etcd_meta_store.ts";
import { MDM_MIGRATIONS } from "../../src/store/mdm_migrate.ts";
import { MdmFixture } from "../mdm_fixture.ts";

export const ETCD_BIN = Bun.which("etcd") ?? "/usr/bin/etcd";
/** when set, each member logs at info level to DIR/<name>.log (appended across restarts), e.g. to see raft elections */
const ETCD_LOG_DIR = process.env.PF_ETCD_LOG_DIR;

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  proc: Subprocess | null;
}

export class EtcdCluster {
  private constructor(
    readonly dir: string,
    readonly members: EtcdMember[],
    private readonly token: string,
    private readonly wrap: (i: number) => string[],
    private readonly extraArgs: string[],
  ) {}

  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  /**
   * hosts: one address per member (default 127.0.0.1 for all); ports: fixed client/peer ports (each
   * member on its own address, e.g. in a network namespace; default free loopback ports); wrap: an
   * argv prefix per member (`ip netns exec NS`); args: more etcd flags (TLS, …); scheme of the
   * client URLs (https with TLS flags in args).
   */
  static async start(
    size: 1 | 3 = 1,
    opts: { hosts?: string[]; ports?: { client: number; peer: number }; wrap?: (i: number) => string[]; args?: string[]; clientScheme?: "http" | "https"; waitWritable?: boolean } = {},
  ): Promise<EtcdCluster> {
    if (Bun.which("etcd") === null) throw new Error("etcd is not installed (apt-get install etcd-server etcd-client; .ci/run does it): the HA tests need it");
    const dir = mkdtempSync(join(tmpdir(), "pf-etcd-"));
    const members: EtcdMember[] = [];
    for (let i = 0; i < size; i++) {
      const name = `e${i + 1}`;
      const host = opts.hosts?.[i] ?? "127.0.0.1";
      const clientPort = opts.ports?.client ?? (await freePort());
      const peerPort = opts.ports?.peer ?? (await freePort());
      members.push({ name, clientUrl: `${opts.clientScheme ?? "http"}://${host}:${clientPort}`, peerUrl: `http://${host}:${peerPort}`, dataDir: join(dir, name), proc: null });
    }
    const c = new EtcdCluster(dir, members, `pf-test-${Date.now()}-${Math.floor(Math.random() * 1e6)}`, opts.wrap ?? (() => []), opts.args ?? []);
    for (let i = 0; i < size; i++) c.spawn(i, "new");
    if (opts.waitWritable !== false) await c.waitWritable(20_000);
    return c;
  }

  private spawn(i: number, state: "new" | "existing"): void {
    const m = this.members[i]!;
    const initial = this.members.map((x) => `${x.name}=${x.peerUrl}`).join(",");
    m.proc = Bun.spawn(
      [
        ...this.wrap(i),
        ETCD_BIN,
        "--name", m.name,
        "--data-dir", m.dataDir,
        "--listen-client-urls", m.clientUrl,
        "--advertise-client-urls", m.clientUrl,
        "--listen-peer-urls", m.peerUrl,
        "--initial-advertise-peer-urls", m.peerUrl,
        "--initial-cluster", initial,
        "--initial-cluster-token", this.token,
        "--initial-cluster-state", state,
        "--unsafe-no-fsync",
        "--max-txn-ops", "10000",
        "--max-request-bytes", "4194304",
        "--heartbeat-interval", "100",
        "--election-timeout", "1000",
        "--log-level", ETCD_LOG_DIR ? "info" : "error",
        ...this.extraArgs,
      ],
      { stdin: "ignore", stdout: "ignore", stderr: ETCD_LOG_DIR ? openSync(join(ETCD_LOG_DIR, `${m.name}.log`), "a") : "ignore" },
    );
  }

  /** Wait until a put through the gateway succeeds on some member. */
  async waitWritable(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const url of this.endpoints) {
        try {
          const r = await fetch(`${url}/v3/kv/put`, { method: "POST", body: JSON.stringify({ key: btoa("/test/ready"), value: btoa("1") }), signal: AbortSignal.timeout(1000) });
          if (r.ok) return;
        } catch {
          // not up yet
        }
      }
      if (Date.now() > deadline) throw new Error(`etcd not writable after ${timeoutMs} ms`);
      await Bun.sleep(100);
    }
  }

  /** Index of the member that is the raft leader. */
  async leaderIndex(): Promise<number> {
    for (let i = 0; i < this.members.length; i++) {
      try {
        const r = await fetch(`${this.members[i]!.clientUrl}/v3/maintenance/status`, { method: "POST", body: "{}", signal: AbortSignal.timeout(1000) });
        const j = (await r.json()) as { leader?: string; header?: { member_id?: string } };
        if (j.leader !== undefined && j.leader === j.header?.member_id) return i;
      } catch {
        // member down
      }
    }
    return -1;
  }

  kill(i: number): void {
    const p = this.members[i]!.proc;
    if (p) p.kill("SIGKILL");
    this.members[i]!.proc = null;
  }

  /** Start a killed member again on its data dir. */
  restart(i: number): void {
    this.spawn(i, "existing");
  }

  async stop(): Promise<void> {
    for (const m of this.members) {
      m.proc?.kill("SIGKILL");
      await m.proc?.exited;
      m.proc = null;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The schema version of this build (what an MDM on etcd records and checks). */
export const SCHEMA_VERSION = MDM_MIGRATIONS.reduce((m, x) => Math.max(m, x.version), -1);

/** An in-process MDM (MdmFixture) in dir whose metadata store is `etcd`, as member `name` of `cluster`. */
export function openMdmOnEtcd(dir: string, etcd: EtcdCluster, member: { cluster: string; name: string; mdmId: string; url: string }): Promise<MdmFixture> {
  return MdmFixture.open({
    dir,
    openMeta: (store) => EtcdMetaStore.open({ sqlite: store.sqlite, endpoints: etcd.endpoints, ...member, schemaVersion: SCHEMA_VERSION }),
  });
}

/**
 * Two in-process MDMs, m1 (opened first, so it leads) and m2 (its standby), on one new etcd
 * member: the set-up of the HA tests that need a leader and a follower, for a test file's
 * beforeAll/afterAll. close() closes whichever MDMs are still open, the etcd and the temp dirs.
 */
export class MdmPairOnEtcd {
  private readonly dirs: string[] = [];
  private readonly opened: MdmFixture[] = [];

  private constructor(
    readonly etcd: EtcdCluster,
    private readonly tag: string,
  ) {}

  static async start(tag: string): Promise<{ pair: MdmPairOnEtcd; a: MdmFixture; b: MdmFixture }> {
    const pair = new MdmPairOnEtcd(await EtcdCluster.start(1), tag);
    const a = await pair.open("m1");
    const b = await pair.open("m2");
    return { pair, a, b };
  }

  /** One more MDM of this cluster (member `name`), in a temp dir of its own. */
  async open(name: string): Promise<MdmFixture> {
    const dir = mkdtempSync(join(tmpdir(), `pf-${this.tag}-`));
    this.dirs.push(dir);
    const m = await openMdmOnEtcd(dir, this.etcd, { cluster: `${this.tag}${process.pid}`, mdmId: `id-${name}`, name, url: `https://127.0.0.1:1/${name}` });
    this.opened.push(m);
    return m;
  }

  async close(): Promise<void> {
    for (const m of this.opened) await m.closeAll().catch(() => {});
    await this.etcd.stop();
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
  }
}

/** Poll a synchronous condition every 25 ms until it holds (an Error after timeoutMs). */
export async function waitUntil(what: string, timeoutMs: number, probe: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(25);
  }
}
