// `pf sdc` wiring: join the MDM, keep maps fresh by heartbeat, serve mapped volumes over NBD.
// The SDC owns nothing durable except its GUID (kept in the data dir so that a restart is the
// same SDC and keeps its mappings) and the highest MDM term it has seen (mdm-term.json there;
// answers of a lower term are refused, src/proto/mdm_term.ts). A failed heartbeat is retried
// after FAILED_BEAT_RETRY_MS so that a new active MDM is found soon after a takeover.

import { consola } from "consola";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ClusterPaths, SdcJoinResponse } from "../proto/cluster_api.ts";
import { clusterRequest, joinWithRetry, type MdmEndpoint } from "../proto/mdm_http.ts";
import { TermGuard } from "../proto/mdm_term.ts";
import { PfError } from "../proto/errors.ts";
import { startNbdServer } from "./nbd_server.ts";
import { SdcNode } from "./sdc_node.ts";
import { DataPlanePool } from "../proto/dataplane_client.ts";

export interface SdcOptions {
  mdm: MdmEndpoint;
  dataDir?: string;
  guid?: string;
  name?: string;
  address: string;
  nbdHost: string;
  nbdPort: number;
}

export interface SdcHandle {
  sdcId: string;
  nbdPort: number;
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

export async function runSdc(opts: SdcOptions): Promise<SdcHandle> {
  const guid = loadGuid(opts);
  const terms = new TermGuard("sdc", opts.dataDir ? join(opts.dataDir, "mdm-term.json") : null);
  const joined = await joinWithRetry("sdc", opts.mdm, async () => {
    const r = await clusterRequest(opts.mdm, {
      method: "POST",
      path: ClusterPaths.sdcJoin,
      body: { guid, name: opts.name, host: opts.address },
      schema: SdcJoinResponse,
    });
    terms.joined(r.systemId);
    if (!terms.observe(r.term, "join")) throw new PfError("STALE_TERM", `the MDM answered the join with term ${r.term}, below ${terms.highest}`);
    return r;
  });
  const sdcId = joined.sdcId;
  const dataKey = joined.dataKey;
  let closeExport: (name: string) => void = () => {};
  const node = new SdcNode({
    mdm: { ...opts.mdm, terms, timeoutMs: opts.mdm.timeoutMs ?? HEARTBEAT_REQUEST_TIMEOUT_MS },
    sdcId,
    links: new DataPlanePool({ dataKeyHex: dataKey, nodeId: sdcId }),
    onUnexport: (name) => closeExport(name),
    sleep: (ms) => Bun.sleep(ms),
    nowMs: () => performance.now(),
  });
  await node.refresh();
  const nbd = await startNbdServer({ host: opts.nbdHost, port: opts.nbdPort, registry: node });
  closeExport = nbd.closeExport;
  consola.info(`sdc ${sdcId}: serving ${node.list().length} volume(s) over NBD on ${opts.nbdHost}:${nbd.port}`);

  let stopped = false;
  const loop = (async () => {
    let failures = 0;
    while (!stopped) {
      await Bun.sleep(failures > 0 ? FAILED_BEAT_RETRY_MS : joined.heartbeatMs);
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
    sdcId,
    nbdPort: nbd.port,
    async stop() {
      stopped = true;
      await nbd.stop();
      node.close();
      await loop;
    },
  };
}
