// Fencing by term, both ends, in process:
// - the receiver (SDS/SDC client, src/proto/mdm_http.ts + mdm_term.ts): an answer of a lower term
//   than already seen is refused and counted, the old MDM is told the newer term, the next MDM of
//   the list is asked; the highest term is persisted per system;
// - the MDM (core/leader_gate.ts): an SDS reporting a higher term makes an active HA MDM step down
//   (409 STALE_TERM, then 421 as a standby); a single sqlite MDM jumps above it (a restored
//   backup) and keeps answering.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HeartbeatResponse, NODE_TOKEN_HEADER } from "../src/proto/cluster_api.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import { nodeTokenOf } from "../src/mdm/core/dataplane_secrets.ts";
import { clusterRequest } from "../src/proto/mdm_http.ts";
import { MDM_TERM_HEADER, TermGuard } from "../src/proto/mdm_term.ts";
import { MdmFixture, SECRET } from "./mdm_fixture.ts";
import { EtcdCluster, openMdmOnEtcd } from "./helpers/etcd.ts";

type Obj = Record<string, unknown>;

function fakeMdm(term: number, seen: string[]): ReturnType<typeof Bun.serve> {
  return Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      seen.push(`${path} ${req.headers.get(MDM_TERM_HEADER) ?? "-"}`);
      return Response.json({ mapVersion: 7, leaseMs: 4000, term });
    },
  });
}

test("an answer of a lower term is refused and counted, the old MDM is told, the next MDM answers", async () => {
  const oldSeen: string[] = [];
  const newSeen: string[] = [];
  const oldMdm = fakeMdm(3, oldSeen);
  const newMdm = fakeMdm(5, newSeen);
  const dir = mkdtempSync(join(tmpdir(), "pf-term-"));
  try {
    const terms = new TermGuard("sds test", join(dir, "mdm-term.json"));
    terms.joined("0123456789abcdef");
    expect(terms.observe(5, "new")).toBe(true);
    const ep = { url: `http://127.0.0.1:${oldMdm.port},http://127.0.0.1:${newMdm.port}`, clusterSecret: SECRET, terms };
    const hb = await clusterRequest(ep, { method: "POST", path: "/sds/0123456789abcdef/heartbeat", body: {}, schema: HeartbeatResponse });
    expect(hb.mapVersion).toBe(7);
    expect(terms.refused).toBe(1);
    expect(newSeen).toEqual(["/pf/v1/sds/0123456789abcdef/heartbeat 5"]);
    // the old MDM heard the request (with term 5) and then the notice of the newer term
    await Bun.sleep(100);
    expect(oldSeen).toEqual(["/pf/v1/sds/0123456789abcdef/heartbeat 5", "/pf/v1/term 5"]);
    // the MDM that answered is asked first from now on
    await clusterRequest(ep, { method: "POST", path: "/sds/0123456789abcdef/heartbeat", body: {}, schema: HeartbeatResponse });
    expect(newSeen).toHaveLength(2);
    expect(terms.refused).toBe(1);
    // persisted: a restarted SDS still refuses term 3
    const again = new TermGuard("sds test", join(dir, "mdm-term.json"));
    expect(again.highest).toBe(5);
    expect(again.observe(3, "old")).toBe(false);
    // another system (a new cluster) starts the record over
    again.joined("fedcba9876543210");
    expect(again.observe(1, "new cluster")).toBe(true);
    expect(JSON.parse(readFileSync(join(dir, "mdm-term.json"), "utf8"))).toEqual({ term: 1, systemId: "fedcba9876543210" });
  } finally {
    oldMdm.stop(true);
    newMdm.stop(true);
    rmSync(dir, { recursive: true, force: true });
  }
});

let etcd: EtcdCluster;
beforeAll(async () => {
  etcd = await EtcdCluster.start(1);
}, 30_000);
afterAll(async () => {
  await etcd?.stop();
});

test("an active HA MDM told of a higher term by an SDS steps down: 409 STALE_TERM, then a standby's 421", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pf-term-"));
  const m = await openMdmOnEtcd(dir, etcd, { cluster: `fence${process.pid}`, mdmId: "id-m1", name: "m1", url: "https://127.0.0.1:1" });
  try {
    const term = m.core.ctx.meta.term();
    const sds = await m.joinSds("sds1");
    const r = await m.raw("POST", `/pf/v1/sds/${sds.sdsId}/heartbeat`, {
      body: JSON.stringify({ devices: [], appliedMapVersion: 0 }),
      headers: { "content-type": "application/json", "x-pf-cluster-secret": SECRET, [MDM_TERM_HEADER]: String(term + 1000) },
    });
    expect(r.text).toContain("STALE_TERM");
    expect(r.status).toBe(409);
    expect(m.core.ctx.meta.isLeader()).toBe(false);
    const next = await m.cluster("POST", `/sds/${sds.sdsId}/heartbeat`, { devices: [], appliedMapVersion: 0 });
    expect([421, 200]).toContain(next.status); // a standby now, or already leading again under a new term
    if (next.status === 200) expect((next.json as Obj).term).toBeGreaterThan(term);
  } finally {
    await m.closeAll();
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);

test("a single sqlite MDM told of a higher term (a restored backup) jumps above it and keeps answering", async () => {
  const m = await MdmFixture.open();
  try {
    const term = m.core.ctx.meta.term();
    const sds = await m.joinSds("sds1");
    const r = await m.raw("POST", `/pf/v1/sds/${sds.sdsId}/heartbeat`, {
      body: JSON.stringify({ devices: [], appliedMapVersion: 0 }),
      headers: {
        "content-type": "application/json",
        "x-pf-cluster-secret": SECRET,
        [NODE_TOKEN_HEADER]: nodeTokenOf(m.core.ctx, NodeRole.SDS, sds.sdsId),
        [MDM_TERM_HEADER]: String(term + 10),
      },
    });
    expect(r.status).toBe(200);
    expect((r.json as Obj).term).toBe(term + 11);
    // the jump is durable: the next start is above it
    m.close({ keepDir: true });
    const again = await MdmFixture.open({ dir: m.dir });
    expect(again.core.ctx.meta.term()).toBe(term + 12);
    again.close();
  } catch (e) {
    m.close();
    throw e;
  }
});
