// The SDS address list is sent only when it changed for the node (proto/cluster_api.ts
// NodeMapsQuery, mdm/cluster/sds_addresses.ts): the MDM omits it from assignments and maps when
// the node's `?addresses=` tag is the current one and sends it (with a new tag) after a join, an
// address change or a removal; a node without a tag always gets it. The SDS keeps its peers (its
// links and the set of SDSs it accepts) and the SDC its links when the list is omitted.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { SdcMapsResponse, SdsAssignmentsResponse } from "../src/proto/cluster_api.ts";
import { Status } from "../src/proto/dataplane.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { SdcNode, type SdsLinks } from "../src/sdc/sdc_node.ts";
import { MdmFixture } from "./mdm_fixture.ts";
import { MiB, Vol, applyAll, assignmentsFor, clientTo, pattern, readCopy, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";

describe("MDM: the address list only when it changed", () => {
  let m: MdmFixture;
  beforeEach(async () => {
    m = await MdmFixture.open();
    await m.login();
  });
  afterEach(() => m.close());

  const assignments = async (sdsId: string, tag?: string) => {
    const r = await m.cluster("GET", `/sds/${sdsId}/assignments${tag ? `?addresses=${tag}` : ""}`);
    expect(r.status).toBe(200);
    return SdsAssignmentsResponse.parse(r.json);
  };
  const maps = async (sdcId: string, tag?: string) => {
    const r = await m.cluster("GET", `/sdc/${sdcId}/maps${tag ? `?addresses=${tag}` : ""}`);
    expect(r.status).toBe(200);
    return SdcMapsResponse.parse(r.json);
  };

  test("omitted when the tag matches; sent again after a join, an address change and a removal", async () => {
    const s1 = await m.joinSds("sds1");
    const s2 = await m.joinSds("sds2");
    const sdc = await m.joinSdc("guid-tag", "sdc1");

    // no tag (an older node): the list, and its tag
    const first = await assignments(s1.sdsId);
    expect(first.sds?.map((a) => a.sdsId).sort()).toEqual([s1.sdsId, s2.sdsId].sort());
    expect(first.sdsTag).toMatch(/^[0-9a-f]{16}$/);
    const tag = first.sdsTag!;
    // the same tag from every answer of the same list: assignments of another SDS, an SDC's maps
    expect((await assignments(s2.sdsId)).sdsTag).toBe(tag);
    const m0 = await maps(sdc);
    expect(m0.sdsTag).toBe(tag);
    expect(m0.sds?.length).toBe(2);

    // the current tag: no list, the same tag back
    const same = await assignments(s1.sdsId, tag);
    expect(same.sds).toBeUndefined();
    expect(same.sdsTag).toBe(tag);
    const sameMaps = await maps(sdc, tag);
    expect(sameMaps.sds).toBeUndefined();
    expect(sameMaps.sdsTag).toBe(tag);
    // a tag of some other list: the list
    expect((await assignments(s1.sdsId, "0123456789abcdef")).sds?.length).toBe(2);
    // not a tag: refused, with a code
    const bad = await m.cluster("GET", `/sds/${s1.sdsId}/assignments?addresses=nope`);
    expect(bad.status).toBe(400);
    expect((bad.json as { pfCode?: string }).pfCode).toBeDefined();

    // a join: a new list
    const s3 = await m.joinSds("sds3");
    const afterJoin = await assignments(s1.sdsId, tag);
    expect(afterJoin.sds?.map((a) => a.sdsId).sort()).toEqual([s1.sdsId, s2.sdsId, s3.sdsId].sort());
    expect(afterJoin.sdsTag).not.toBe(tag);
    const joinedMaps = await maps(sdc, tag);
    expect(joinedMaps.sds?.length).toBe(3);
    expect(joinedMaps.sdsTag).toBe(afterJoin.sdsTag!);

    // an SDS moving to another port (a rejoin by name): a new list with the new address
    const tag3 = afterJoin.sdsTag!;
    expect((await assignments(s1.sdsId, tag3)).sds).toBeUndefined();
    await m.joinSds("sds2", { port: 7702 });
    const moved = await assignments(s1.sdsId, tag3);
    expect(moved.sds?.find((a) => a.sdsId === s2.sdsId)?.port).toBe(7702);
    expect(moved.sdsTag).not.toBe(tag3);

    // a removal (an empty SDS goes at once): a new list without it
    const tagMoved = moved.sdsTag!;
    const rm = await m.api("POST", `/instances/Sds::${s3.sdsId}/action/removeSds`, { force: "FALSE" });
    expect(rm.status).toBe(200);
    const removed = await maps(sdc, tagMoved);
    expect(removed.sds?.map((a) => a.sdsId).sort()).toEqual([s1.sdsId, s2.sdsId].sort());
    expect(removed.sdsTag).not.toBe(tagMoved);
    expect(removed.sdsTag).not.toBe(tag); // sds2 moved since the first list
  });
});

describe("SDS: an answer without the list keeps the peers", () => {
  const VOL = "0a00000000000009";
  const vol = new Vol(VOL);
  const plan: ExtentPlan[] = [{ volumeId: VOL, extentBytes: 4 * MiB, extents: [{ index: 0, replicas: [0, 1] }] }];
  let dir: string;
  let nodes: SdsCore[];
  beforeEach(() => {
    dir = tmpDir("sdstag");
    nodes = [startNode(dir, 0), startNode(dir, 1)];
    applyAll(nodes, plan);
  });
  afterEach(async () => {
    for (const n of nodes) await n.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("the primary still forwards to its secondary, which still accepts it; a list sent again applies", async () => {
    const tagged = (me: number, mapVersion: number, withList: boolean) => {
      const a = assignmentsFor(me, nodes, plan, mapVersion);
      return { ...a, sdsTag: "00000000000000aa", ...(withList ? {} : { sds: undefined }) };
    };
    for (const [i, n] of nodes.entries()) n.node.applyAssignments(tagged(i, 2, true));
    expect(nodes[0]!.node.addressesTag).toBe("00000000000000aa");
    // version 3 without the list, on both: the peers stay as they were
    for (const [i, n] of nodes.entries()) n.node.applyAssignments(tagged(i, 3, false));
    expect(nodes[0]!.node.appliedMapVersion).toBe(3);
    expect(nodes[0]!.node.addressesTag).toBe("00000000000000aa");
    expect(nodes[0]!.node.peers.link("5d50000000000001")).toBeDefined();
    const c = clientTo(nodes[0]!);
    try {
      const data = pattern(64 * 1024, 7);
      const r = await vol.write(c, 0, 0, data, { epoch: 1 });
      expect(r.status).toBe(Status.OK);
      expect(Buffer.from(readCopy(nodes[1]!, VOL, 0, 0, data.byteLength)).equals(Buffer.from(data))).toBe(true);
      expect(nodes[1]!.node.stats.replWrites).toBe(1);
    } finally {
      c.close();
    }
    // a list again (SDS 1 gone from it): applied, its link closed
    const only0 = { ...assignmentsFor(0, nodes, plan, 4), sds: [{ sdsId: "5d50000000000000", host: "127.0.0.1", port: nodes[0]!.port }], sdsTag: "00000000000000bb" };
    nodes[0]!.node.applyAssignments(only0);
    expect(nodes[0]!.node.peers.link("5d50000000000001")).toBeUndefined();
    expect(nodes[0]!.node.addressesTag).toBe("00000000000000bb");
  });
});

describe("SDC: maps without the list keep the links", () => {
  test("links set from a list stay when the next maps omit it, and follow the next list", () => {
    const addresses = new Map<string, string>();
    const links: SdsLinks = {
      setAddress: (id, host, port) => void addresses.set(id, `${host}:${port}`),
      retain: (ids) => {
        for (const id of [...addresses.keys()]) if (!ids.has(id)) addresses.delete(id);
      },
      link: () => undefined,
      close: () => undefined,
    };
    const sdc = new SdcNode({ mdm: { url: "https://127.0.0.1:1" }, sdcId: "c000000000000001", links, onUnexport: () => undefined, sleep: Bun.sleep, nowMs: () => performance.now() });
    const base = { mapVersion: 1, nodeKeys: [], dataPlaneTls: false, volumes: [], nbdRevoked: [] };
    sdc.apply({ ...base, sds: [{ sdsId: "5d50000000000000", host: "127.0.0.1", port: 7000 }, { sdsId: "5d50000000000001", host: "127.0.0.1", port: 7001 }], sdsTag: "00000000000000aa" });
    expect([...addresses.keys()].sort()).toEqual(["5d50000000000000", "5d50000000000001"]);
    sdc.apply({ ...base, mapVersion: 2, sdsTag: "00000000000000aa" });
    expect(sdc.mapVersion).toBe(2);
    expect([...addresses.keys()].sort()).toEqual(["5d50000000000000", "5d50000000000001"]);
    sdc.apply({ ...base, mapVersion: 3, sds: [{ sdsId: "5d50000000000001", host: "127.0.0.1", port: 7101 }], sdsTag: "00000000000000bb" });
    expect([...addresses.entries()]).toEqual([["5d50000000000001", "127.0.0.1:7101"]]);
  });
});
