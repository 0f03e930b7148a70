// `pf sdc` wiring: join the MDM, keep maps fresh by heartbeat, serve mapped volumes over NBD
// (with --nbd-tls: the operator's certificate directory, or a server certificate from the cluster
// NBD CA asked for right after the join).
// The SDC owns nothing durable except its GUID (kept in the data dir so that a restart is the
// same SDC and keeps its mappings). The control port (HTTP /health, /metrics, /status) listens
// before the join; every heartbeat carries the cumulative IO counters (src/proto/io_report.ts)
// under a random per-process incarnation.
// It keeps the highest MDM term it has seen (mdm-term.json in its data dir; answers of a lower
// term are refused, src/proto/mdm_term.ts). A failed heartbeat is retried after
// FAILED_BEAT_RETRY_MS so that a new active MDM is found soon after a takeover.

import { consola } from "consola";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ClusterPaths, SdcJoinResponse } from "../proto/cluster_api.ts";
import { startControlServer, type ControlServer } from "../proto/control_server.ts";
import { TermGuard } from "../proto/mdm_term.ts";
import { PfError } from "../proto/errors.ts";
import { DataPlanePool } from "../proto/dataplane_client.ts";
import { TlsDrift, loadOrMakeNodeKey, refuseInsecureTlsEnv, tlsAfterJoin } from "../proto/dataplane_tls.ts";
import { NodeRole } from "../proto/dataplane_auth.ts";
import { NodeKeyring, keysFromHex } from "../proto/dataplane_keys.ts";
import { newIncarnation } from "../proto/io_meter.ts";
import { clusterRequest, joinWithRetry, type MdmEndpoint } from "../proto/mdm_http.ts";
import { MetricRegistry } from "../proto/metrics.ts";
import { registerProcessMetrics } from "../proto/process_metrics.ts";
import { startNbdServer, type NbdServer } from "./nbd_server.ts";
import { NbdRevocations } from "./nbd_revocations.ts";
import { loadNbdTls, nbdTlsSource, warnPlaintextExposure, type NbdTlsMaterial, type NbdTlsMode } from "./nbd_tls.ts";
import { clusterNbdTls } from "./nbd_cluster_cert.ts";
import { SdcControl } from "./sdc_control.ts";
import { SdcGrants } from "./sdc_grants.ts";
import { SdcMetrics } from "./sdc_metrics.ts";
import { SdcNode } from "./sdc_node.ts";

export interface SdcOptions {
  mdm: MdmEndpoint;
  dataDir?: string;
  guid?: string;
  name?: string;
  address: string;
  nbdHost: string;
  nbdPort: number;
  /** pf version, for pf_build_info and /status */
  version?: string;
  /** control HTTP port (0 = any free port); null or absent: none */
  control?: { host: string; port: number } | null;
  /** NBD over TLS (nbd_tls.ts); absent: off. `explicit`: the operator chose the mode (no warning) */
  nbdTls?: { mode: NbdTlsMode; explicit: boolean; dir?: string; verifyPeer: boolean };
  /** --data-plane-tls: TLS to the SDSs expected on (true) or off (false); absent: as the MDM says at join */
  dataPlaneTls?: boolean;
}

export interface SdcHandle {
  sdcId: string;
  nbdPort: number;
  /** http://HOST:PORT of the control port, null when there is none */
  controlUrl: string | null;
  stop(): Promise<void>;
}


function loadGuid(opts: SdcOptions): string {
  if (opts.guid) return opts.guid;
  if (!opts.dataDir) {
    consola.warn("sdc: no --data-dir and no --guid: this SDC gets a new GUID on every start");
    return crypto.randomUUID();
  }
  mkdirSync(opts.dataDir, { recursive: true });
  const file = join(opts.dataDir, "sdc-guid");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const guid = crypto.randomUUID();
  writeFileSync(file, guid + "\n", { mode: 0o600 });
  return guid;
}

const FAILED_BEAT_RETRY_MS = 250;
const HEARTBEAT_REQUEST_TIMEOUT_MS = 1500;

/**
 * How the NBD server gets its TLS material: none (TLS off: then warn about exposure), the
 * operator's directory (read now, before the join, so a bad file stops the SDC at once), or the
 * cluster NBD CA (after the join: nbd_cluster_cert.ts).
 */
type NbdTlsPlan = { kind: "off" } | { kind: "dir"; material: NbdTlsMaterial } | { kind: "cluster"; mode: Exclude<NbdTlsMode, "off">; dir: string; verifyPeer: boolean };

function nbdTlsPlan(opts: SdcOptions): NbdTlsPlan {
  const t = opts.nbdTls ?? { mode: "off" as const, explicit: false, verifyPeer: false };
  if (t.mode === "off") {
    warnPlaintextExposure(opts.nbdHost, "off", t.explicit);
    return { kind: "off" };
  }
  if (t.dir === undefined) throw new PfError("BAD_REQUEST", `NBD TLS ${t.mode} needs a certificate directory (--nbd-tls-dir)`);
  if (nbdTlsSource(t.dir) === "cluster") return { kind: "cluster", mode: t.mode, dir: t.dir, verifyPeer: t.verifyPeer };
  const m = loadNbdTls({ mode: t.mode, dir: t.dir, listenHost: opts.nbdHost, certHosts: [opts.address], verifyPeer: t.verifyPeer });
  consola.info(`sdc: NBD TLS ${t.mode}${t.verifyPeer ? " with client certificates" : ""} from the operator's ${t.dir}: clients trust ${t.dir}/ca-cert.pem`);
  return { kind: "dir", material: m };
}

async function nbdTlsAfterJoin(plan: NbdTlsPlan, opts: SdcOptions, mdm: MdmEndpoint, sdcId: string, systemId: string): Promise<NbdTlsMaterial | undefined> {
  if (plan.kind === "off") return undefined;
  if (plan.kind === "dir") return plan.material;
  const m = await clusterNbdTls({ mode: plan.mode, dir: plan.dir, verifyPeer: plan.verifyPeer, listenHost: opts.nbdHost, address: opts.address, mdm, sdcId, systemId });
  consola.info(`sdc ${sdcId}: NBD TLS ${plan.mode}${plan.verifyPeer ? " with client certificates of the cluster NBD CA" : ""}: clients trust the cluster NBD CA (${plan.dir}/ca-cert.pem, scli --query_nbd_ca)`);
  return m;
}

export async function runSdc(opts: SdcOptions): Promise<SdcHandle> {
  const guid = loadGuid(opts);
  const tlsPlan = nbdTlsPlan(opts);
  const version = opts.version ?? "unknown";
  const registry = new MetricRegistry();
  const proc = registerProcessMetrics(registry, { role: "sdc", version });
  const control = new SdcControl(registry, { name: opts.name ?? null, guid, version, mdmUrl: opts.mdm.url, nbdHost: opts.nbdHost }, proc);
  let controlServer: ControlServer | null = null;
  let node: SdcNode | null = null;
  let nbd: NbdServer | null = null;
  let beats: HeartbeatLoop | null = null;
  try {
    if (opts.control) {
      controlServer = startControlServer({ host: opts.control.host, port: opts.control.port, source: control });
      consola.info(`sdc: control port ${controlServer.url} (/health /metrics /status)`);
    }
    const terms = new TermGuard("sdc", opts.dataDir ? join(opts.dataDir, "mdm-term.json") : null);
    if (opts.dataPlaneTls === true) refuseInsecureTlsEnv();
    const tlsKey = loadOrMakeNodeKey(opts.dataDir);
    const joined = await joinWithRetry("sdc", opts.mdm, async () => {
      const r = await clusterRequest(opts.mdm, {
        method: "POST",
        path: ClusterPaths.sdcJoin,
        body: { guid, name: opts.name, host: opts.address, tlsPublicKey: tlsKey.publicKeyPem },
        schema: SdcJoinResponse,
      });
      terms.joined(r.systemId);
      if (!terms.observe(r.term, "join")) throw new PfError("STALE_TERM", `the MDM answered the join with term ${r.term}, below ${terms.highest}`);
      return r;
    });
    const sdcId = joined.sdcId;
    const dpTls = tlsAfterJoin("sdc", opts.dataPlaneTls, joined.dataPlaneTls, tlsKey, { role: NodeRole.SDC, nodeId: sdcId });
    if (dpTls !== null) consola.info(`sdc ${sdcId}: data-plane TLS on (certificate issued by the MDM at join)`);
    // this SDC's own node keys (renewed with its maps); its per-node calls carry its token
    const keys = new NodeKeyring(NodeRole.SDC, sdcId, keysFromHex(joined.nodeKeys));
    const mdm: MdmEndpoint = { ...opts.mdm, nodeToken: joined.nodeToken, terms, timeoutMs: opts.mdm.timeoutMs ?? HEARTBEAT_REQUEST_TIMEOUT_MS };
    const grants = new SdcGrants();
    const metrics = new SdcMetrics(registry, sdcId);
    const incarnation = newIncarnation();
    let closeExport: (name: string) => void = () => {};
    const nbdRevocations = new NbdRevocations();
    const n = new SdcNode({
      mdm,
      sdcId,
      heartbeatMs: joined.heartbeatMs,
      keys,
      grants,
      links: new DataPlanePool({ credentials: keys, grants, ...(dpTls === null ? {} : { tls: () => dpTls }) }),
      tlsDrift: new TlsDrift(`sdc ${sdcId}`, dpTls !== null),
      nbdRevocations,
      onUnexport: (name) => closeExport(name),
      sleep: (ms) => Bun.sleep(ms),
      nowMs: () => performance.now(),
      meterFor: (volumeId, name) => metrics.volume(volumeId, name),
      ioReport: () => metrics.report(incarnation, nbd?.stats() ?? { connections: 0, inflightIos: 0 }),
    });
    node = n;
    await n.refresh();
    // heartbeats start before the NBD certificate: an SDC waiting for its approval (restricted
    // SDC mode) is Connected and shown not approved, not Disconnected
    beats = heartbeatLoop(sdcId, joined.heartbeatMs, n);
    const tls = await nbdTlsAfterJoin(tlsPlan, opts, mdm, sdcId, joined.systemId);
    const server = await startNbdServer({ host: opts.nbdHost, port: opts.nbdPort, registry: n, tls: tls && { ...tls, revocations: nbdRevocations } });
    nbd = server;
    closeExport = server.closeExport;
    control.attach(sdcId, n, server, terms);
    consola.info(`sdc ${sdcId}: serving ${n.list().length} volume(s) over NBD on ${opts.nbdHost}:${server.port}`);
    return serve(sdcId, beats, n, server, controlServer, () => proc.stop());
  } catch (e) {
    const beatsEnded = beats?.stop();
    await nbd?.stop();
    node?.close();
    await beatsEnded;
    await controlServer?.stop();
    proc.stop();
    throw e;
  }
}

interface HeartbeatLoop {
  stop(): Promise<void>;
}

/** The SDC's heartbeats (and its map watch) until stop. */
function heartbeatLoop(sdcId: string, heartbeatMs: number, node: SdcNode): HeartbeatLoop {
  let stopped = false;
  let wake: (() => void) | null = null;
  node.watchMaps();
  const loop = (async () => {
    let failures = 0;
    while (!stopped) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, failures > 0 ? FAILED_BEAT_RETRY_MS : heartbeatMs);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = null;
      if (stopped) break;
      try {
        await node.heartbeat();
        if (failures > 0) consola.info(`sdc ${sdcId}: MDM reachable again after ${failures} failed heartbeat(s)`);
        failures = 0;
      } catch (e) {
        if (failures++ === 0) consola.warn(`sdc ${sdcId}: heartbeat to MDM failed (IO continues on cached maps): ${(e as Error).message}`);
      }
    }
  })();
  return {
    async stop() {
      stopped = true;
      (wake as (() => void) | null)?.();
      await loop;
    },
  };
}

/** A running SDC, and its stop. */
function serve(sdcId: string, beats: HeartbeatLoop, node: SdcNode, nbd: NbdServer, controlServer: ControlServer | null, stopProcessMetrics: () => void): SdcHandle {
  return {
    sdcId,
    nbdPort: nbd.port,
    controlUrl: controlServer?.url ?? null,
    async stop() {
      const beatsEnded = beats.stop(); // no new heartbeat from here on
      await nbd.stop();
      node.close();
      await beatsEnded;
      await controlServer?.stop();
      stopProcessMetrics();
    },
  };
}
