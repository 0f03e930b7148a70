// A "member" SDC played by the test process against a running cluster (dist/pf): it joins with
// the cluster secret like any SDC, gets its own keys and maps from the MDM, and then talks to
// the SDSs directly with hand-built requests, so tests can check what the SDSs themselves let
// it do (the real SDC's own checks are out of the way). Also an admin REST session.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { ClusterPaths, SdcJoinResponse, SdcMapsResponse, type VolumeMap } from "../../src/proto/cluster_api.ts";
import { Op, Status } from "../../src/proto/dataplane.ts";
import { NodeRole } from "../../src/proto/dataplane_auth.ts";
import { DataPlanePool, type DataReply } from "../../src/proto/dataplane_client.ts";
import { NodeKeyring, keysFromHex } from "../../src/proto/dataplane_keys.ts";
import { idToHalves } from "../../src/proto/ids.ts";
import { clusterRequest, mdmLogin, mdmRequest, type MdmEndpoint } from "../../src/proto/mdm_http.ts";
import { SdcGrants } from "../../src/sdc/sdc_grants.ts";
import type { TestCluster } from "./cluster.ts";

export async function adminEndpoint(c: TestCluster): Promise<MdmEndpoint> {
  const ep: MdmEndpoint = { url: c.mdmUrl, caPem: readFileSync(c.caFile, "utf8") };
  return { ...ep, token: await mdmLogin(ep, "admin", "test-admin-pw") };
}

export async function rest(ep: MdmEndpoint, method: "GET" | "POST", path: string, body?: unknown): Promise<unknown> {
  return mdmRequest(ep, { method, path: `/api${path}`, body, schema: z.unknown() });
}

export async function idOf(ep: MdmEndpoint, type: string, name: string): Promise<string> {
  return z.string().parse(await rest(ep, "POST", `/types/${type}/instances/action/queryIdByKey`, { name }));
}

export class RogueSdc {
  readonly keys: NodeKeyring;
  readonly grants = new SdcGrants();
  readonly pool: DataPlanePool;
  maps: SdcMapsResponse | null = null;

  private constructor(
    readonly sdcId: string,
    private readonly ep: MdmEndpoint,
    join: SdcJoinResponse,
  ) {
    this.keys = new NodeKeyring(NodeRole.SDC, sdcId, keysFromHex(join.nodeKeys));
    this.pool = new DataPlanePool({ credentials: this.keys, grants: this.grants, requestTimeoutMs: 10_000 });
  }

  static async join(c: TestCluster, guid: string): Promise<RogueSdc> {
    const secret = readFileSync(join(c.dataDir, "cluster-secret"), "utf8").trim();
    const ep: MdmEndpoint = { url: c.mdmUrl, caPem: readFileSync(c.caFile, "utf8"), clusterSecret: secret };
    const j = await clusterRequest(ep, { method: "POST", path: ClusterPaths.sdcJoin, body: { guid, host: "127.0.0.1" }, schema: SdcJoinResponse });
    return new RogueSdc(j.sdcId, { ...ep, nodeToken: j.nodeToken }, j);
  }

  /** Fetch this SDC's maps (keys, grants, addresses) as the real SDC does. */
  async refresh(): Promise<SdcMapsResponse> {
    const m = await clusterRequest(this.ep, { method: "GET", path: ClusterPaths.sdcMaps(this.sdcId), schema: SdcMapsResponse });
    this.keys.set(keysFromHex(m.nodeKeys));
    for (const a of m.sds!) this.pool.setAddress(a.sdsId, a.host, a.port);
    for (const lo of this.grants.update(m.volumes)) this.pool.forgetGrant(lo);
    this.maps = m;
    return m;
  }

  volume(name: string): VolumeMap | undefined {
    return this.maps?.volumes.find((v) => v.name === name);
  }

  /** One request to the primary of the extent holding `offsetBytes` (map `vm`, e.g. remembered from before an unmap). */
  request(vm: VolumeMap, opcode: Op, offsetBytes: number, lengthBytes: number, payload?: Uint8Array): Promise<DataReply> {
    const idx = Math.floor(offsetBytes / vm.extentSizeBytes);
    const ext = vm.extents[idx]!;
    const { hi, lo } = idToHalves(vm.volumeId);
    const link = this.pool.link(ext.replicas[0]!);
    if (link === undefined) return Promise.resolve({ status: Status.UNAVAILABLE, payload: new Uint8Array(0) });
    return link.request(
      { opcode, flags: 0, epoch: ext.epoch, volumeHi: hi, volumeLo: lo, extentIndex: idx, offset: offsetBytes - idx * vm.extentSizeBytes, length: lengthBytes },
      payload,
    );
  }

  close(): void {
    this.pool.close();
  }
}

export { Op, Status };
