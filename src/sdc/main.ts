// `pf sdc` wiring: join the MDM, keep maps fresh by heartbeat, serve mapped volumes over NBD.
// The SDC owns nothing durable except its GUID (kept in the data dir so that a restart is the
// same SDC and keeps its mappings).

import { consola } from "consola";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ClusterPaths, SdcJoinResponse } from "../proto/cluster_api.ts";
import { clusterRequest, joinWithRetry, type MdmEndpoint } from "../proto/mdm_http.ts";
import { startNbdServer } from "./nbd_server.ts";
import { SdcNode } from "./sdc_node.ts";
import { SdcGrants } from "./sdc_grants.ts";
import { DataPlanePool } from "../proto/dataplane_client.ts";
import { NodeRole } from "../proto/dataplane_auth.ts";
import { NodeKeyring, keysFromHex } from "../proto/dataplane_keys.ts";

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

export async function runSdc(opts: SdcOptions): Promise<SdcHandle> {
  const guid = loadGuid(opts);
  const joined = await joinWithRetry("sdc", opts.mdm, () =>
    clusterRequest(opts.mdm, {
      method: "POST",
      path: ClusterPaths.sdcJoin,
      body: { guid, name: opts.name, host: opts.address },
      schema: SdcJoinResponse,
    }),
  );
  const sdcId = joined.sdcId;
  // this SDC's own node keys (renewed with its maps); its per-node calls carry its token
  const keys = new NodeKeyring(NodeRole.SDC, sdcId, keysFromHex(joined.nodeKeys));
  const mdm: MdmEndpoint = { ...opts.mdm, nodeToken: joined.nodeToken };
  let closeExport: (name: string) => void = () => {};
  const grants = new SdcGrants();
  const node = new SdcNode({
    mdm,
    sdcId,
    keys,
    grants,
    links: new DataPlanePool({ credentials: keys, grants }),
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
    while (!stopped) {
      await Bun.sleep(joined.heartbeatMs);
      if (stopped) break;
      try {
        await node.heartbeat();
      } catch (e) {
        consola.warn(`sdc ${sdcId}: heartbeat to MDM failed (IO continues on cached maps): ${(e as Error).message}`);
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
