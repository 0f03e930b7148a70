// Two `pf sds` instances (runSds) against a real in-process MDM over HTTPS: they join with the
// cluster secret, report their devices, heartbeat (which gives them their lease), and pick up
// the assignments of a volume created through the REST API; a write through the primary then
// reads back, and both copies have the same checksum.

import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import { join } from "node:path";
import { consola } from "consola";
import { runMdm, type MdmHandle } from "../src/mdm/main.ts";
import { CLUSTER_API_PREFIX, CLUSTER_SECRET_HEADER, NODE_TOKEN_HEADER, ClusterPaths, SdcJoinResponse, SdcMapsResponse } from "../src/proto/cluster_api.ts";
import { Op, Status } from "../src/proto/dataplane.ts";
import { DataPlanePool } from "../src/proto/dataplane_client.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import { NodeKeyring, keysFromHex } from "../src/proto/dataplane_keys.ts";
import { idToHalves } from "../src/proto/ids.ts";
import { runSds, type SdsHandle } from "../src/sds/main.ts";
import { SdcGrants } from "../src/sdc/sdc_grants.ts";
import { MiB, pattern, tmpDir } from "./sds_harness.ts";

let dir: string;
let mdm: MdmHandle;
const sds: SdsHandle[] = [];

beforeAll(async () => {
  consola.level = 2;
  dir = tmpDir("sdsmdm");
  mdm = await runMdm({ dataDir: join(dir, "mdm"), listenHost: "127.0.0.1", listenPort: 0, adminPassword: "test-password-1" });
  for (let i = 0; i < 2; i++) {
    sds.push(
      await runSds({
        mdm: { url: mdm.url, caPem: mdm.certPem, clusterSecret: mdm.clusterSecret },
        dataDir: join(dir, `sds${i}`),
        name: `sds${i}`,
        host: "127.0.0.1",
        port: 0,
        devices: [{ path: join(dir, `sds${i}.img`), sizeBytes: 2048 * MiB }],
        protectionDomainName: "pd1",
        storagePoolName: "sp1",
      }),
    );
  }
});

afterAll(async () => {
  for (const s of sds) await s.stop();
  await mdm?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function rest(method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<unknown> {
  // a fetch a busy MDM sheds (429, under CI load) is asked again a second later, as the nodes
  // ask again after the delay it names (fetch_shedding.ts); any other status fails the test
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(mdm.url + path, {
      method,
      headers: body === undefined ? headers : { ...headers, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      tls: { ca: mdm.certPem ?? undefined },
    } as RequestInit);
    const text = await res.text();
    if (res.status === 429 && attempt < 10) {
      await Bun.sleep(1000);
      continue;
    }
    if (res.status !== 200) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return JSON.parse(text);
  }
}

test("SDSs join, get the assignments of a new volume, and replicate a write", async () => {
  expect(sds[0]!.sdsId).not.toBe(sds[1]!.sdsId);
  const basic = (u: string, p: string) => ({ authorization: `Basic ${Buffer.from(`${u}:${p}`).toString("base64")}` });
  const token = (await rest("GET", "/api/login", basic("admin", "test-password-1"))) as string;
  const auth = basic("", token);
  const pool = (await rest("POST", "/api/types/StoragePool/instances/action/queryIdByKey", auth, { name: "sp1" })) as string;
  const vol = (await rest("POST", "/api/types/Volume/instances", auth, { storagePoolId: pool, volumeSizeInGb: "1", name: "v1", volumeType: "ThinProvisioned" })) as { id: string };
  const cluster = { [CLUSTER_SECRET_HEADER]: mdm.clusterSecret };
  const sdc = SdcJoinResponse.parse(await rest("POST", CLUSTER_API_PREFIX + ClusterPaths.sdcJoin, cluster, { guid: "test-sdc", host: "127.0.0.1" }));
  await rest("POST", `/api/instances/Volume::${vol.id}/action/addMappedSdc`, auth, { sdcId: sdc.sdcId, accessMode: "ReadWrite" });
  const maps = SdcMapsResponse.parse(await rest("GET", CLUSTER_API_PREFIX + ClusterPaths.sdcMaps(sdc.sdcId), { ...cluster, [NODE_TOKEN_HEADER]: sdc.nodeToken }));
  const v = maps.volumes.find((x) => x.volumeId === vol.id)!;
  expect(v).toBeDefined();
  const ext = v.extents[0]!;
  expect(ext.replicas.length).toBe(2);
  const grants = new SdcGrants();
  grants.update(maps.volumes);
  const pool2 = new DataPlanePool({ credentials: new NodeKeyring(NodeRole.SDC, sdc.sdcId, keysFromHex(sdc.nodeKeys)), grants });
  for (const a of maps.sds!) pool2.setAddress(a.sdsId, a.host, a.port);
  const { hi, lo } = idToHalves(vol.id);
  const h = { flags: 0, epoch: ext.epoch, volumeHi: hi, volumeLo: lo, extentIndex: 0, offset: 8192, length: 4096 };
  const data = pattern(4096, 42);
  // the SDSs pick the assignments up within a heartbeat or two
  let st: Status = Status.NOT_OWNER;
  const deadline = performance.now() + 10_000;
  while (performance.now() < deadline) {
    st = (await pool2.link(ext.replicas[0]!)!.request({ ...h, opcode: Op.WRITE }, data)).status;
    if (st === Status.OK) break;
    await Bun.sleep(100);
  }
  expect(st).toBe(Status.OK);
  const r = await pool2.link(ext.replicas[0]!)!.request({ ...h, opcode: Op.READ });
  expect(r.status).toBe(Status.OK);
  expect(Buffer.from(r.payload).equals(Buffer.from(data))).toBe(true);
  // the secondary serves no client reads; its copy shows through an extent checksum
  const sums = [];
  for (const id of ext.replicas) {
    const c = await pool2.link(id)!.request({ ...h, opcode: Op.CHECKSUM, offset: 0, length: 0 });
    expect(c.status).toBe(Status.OK);
    sums.push(Buffer.from(c.payload).toString("hex"));
  }
  expect(sums[1]).toBe(sums[0]!);
  pool2.close();
}, 30_000);
