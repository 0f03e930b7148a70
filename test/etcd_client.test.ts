// The thin etcd JSON-gateway client (src/store/etcd_client.ts, etcd_watch.ts) against a real
// etcd (Debian's 3.4 binary, one member): the gateway's gotchas measured in mdm-ha.md §3 each
// have a test — int64s as strings, no `succeeded` on a failed txn, code 5 for a dead lease,
// TTL 1 raised to 2, no TTL in a keepalive of a dead lease, a LEASE guard failing after expiry —
// plus the watch (resume from a revision, compaction reported), endpoint rotation and timeouts,
// and (three members) a keepalive sent during an etcd election parked for a second or more.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { createServer, type Server } from "node:net";
import { EtcdClient, EtcdError } from "../src/store/etcd_client.ts";
import { EtcdWatch, type WatchedEvent } from "../src/store/etcd_watch.ts";
import { b64 } from "../src/store/etcd_wire.ts";
import { EtcdCluster } from "./helpers/etcd.ts";

let etcd: EtcdCluster;
let client: EtcdClient;

beforeAll(async () => {
  etcd = await EtcdCluster.start(1);
  client = new EtcdClient({ endpoints: etcd.endpoints });
}, 30_000);

afterAll(async () => {
  await etcd?.stop();
});

async function rawPost(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${etcd.endpoints[0]}${path}`, { method: "POST", body: JSON.stringify(body) });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
}

test("gotcha: int64s are strings on the wire; the client gives numbers", async () => {
  const raw = await rawPost("/v3/kv/put", { key: b64("/t/int64"), value: b64("v") });
  const header = raw.json.header as Record<string, unknown>;
  expect(typeof header.revision).toBe("string");
  const rev = await client.put("/t/int64", "w");
  expect(typeof rev).toBe("number");
  expect(rev).toBe(Number(header.revision) + 1);
  const kv = await client.get("/t/int64");
  expect(kv).toMatchObject({ key: "/t/int64", value: "w", version: 2, modRevision: rev });
});

test("gotcha: a failed txn has no `succeeded` field; the client says false and returns the failure branch", async () => {
  await client.put("/t/txn", "x");
  const cmp = [{ target: "CREATE", key: b64("/t/txn"), result: "EQUAL", create_revision: "0" }];
  const raw = await rawPost("/v3/kv/txn", { compare: cmp, success: [], failure: [] });
  expect(raw.status).toBe(200);
  expect("succeeded" in raw.json).toBe(false);
  const r = await client.txn({
    compare: [{ key: "/t/txn", target: "CREATE", result: "EQUAL", value: 0 }],
    success: [{ put: { key: "/t/txn", value: "never" } }],
    failure: [{ range: { key: "/t/txn" } }],
  });
  expect(r.succeeded).toBe(false);
  expect(r.ranges[0]?.[0]?.value).toBe("x");
  const ok = await client.txn({ compare: [{ key: "/t/txn-new", target: "CREATE", result: "EQUAL", value: 0 }], success: [{ put: { key: "/t/txn-new", value: "1" } }] });
  expect(ok.succeeded).toBe(true);
});

test("gotcha: TTL 1 is raised to 2; a put with a dead lease is code 5; keepalive of a dead lease has no TTL", async () => {
  const lease = await client.leaseGrant(1);
  expect(lease.ttlS).toBe(2);
  expect(await client.leaseKeepAlive(lease.id)).toBe(2);
  await client.leaseRevoke(lease.id);
  await client.leaseRevoke(lease.id); // revoking twice is not an error: the lease is gone either way
  const raw = await rawPost("/v3/lease/keepalive", { ID: lease.id });
  expect((raw.json.result as Record<string, unknown>).TTL).toBeUndefined();
  expect(await client.leaseKeepAlive(lease.id)).toBeNull();
  expect(await client.leaseTimeToLive(lease.id)).toBeNull();
  const err = await client.put("/t/leased", "v", lease.id).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(EtcdError);
  expect((err as EtcdError).grpcCode).toBe(5);
  expect((err as EtcdError).leaseNotFound).toBe(true);
});

test("gotcha: a txn guarded by LEASE(key)==myLease fails once the lease has expired", async () => {
  const lease = await client.leaseGrant(2);
  await client.put("/t/leader", "me", lease.id);
  const guard = { key: "/t/leader", target: "LEASE" as const, result: "EQUAL" as const, value: lease.id };
  expect((await client.txn({ compare: [guard], success: [{ put: { key: "/t/guarded", value: "1" } }] })).succeeded).toBe(true);
  const t0 = performance.now();
  while ((await client.get("/t/leader")) !== null) await Bun.sleep(100);
  // etcd never ends a lease before its TTL (it may end it later: the expiry sweep)
  expect(performance.now() - t0).toBeGreaterThan(1500);
  expect((await client.txn({ compare: [guard], success: [{ put: { key: "/t/guarded", value: "2" } }] })).succeeded).toBe(false);
  expect((await client.get("/t/guarded"))?.value).toBe("1");
}, 10_000);

test("watch: events in revision order from a start revision, resumed without loss; compaction is reported", async () => {
  const start = (await client.put("/w/a", "1")) + 0;
  await client.put("/w/b", "2");
  await client.deleteRange("/w/a");
  const seen: WatchedEvent[] = [];
  const w = new EtcdWatch(client, { prefix: "/w/", startRevision: start }, { onEvents: (ev) => seen.push(...ev), onCompacted: () => {} });
  const deadline = Date.now() + 5000;
  while (seen.length < 3 && Date.now() < deadline) await Bun.sleep(20);
  await client.put("/w/c", "3");
  while (seen.length < 4 && Date.now() < deadline) await Bun.sleep(20);
  await w.stop();
  expect(seen.map((e) => `${e.type} ${e.key}`)).toEqual(["PUT /w/a", "PUT /w/b", "DELETE /w/a", "PUT /w/c"]);
  const revs = seen.map((e) => e.modRevision);
  expect([...revs].sort((a, b) => a - b)).toEqual(revs);
  expect(w.resumeRevision).toBe(revs[3]! + 1);

  // compact past a revision, then watch from before it: the watch says so and stops
  const now = await client.put("/w/d", "4");
  await client.call("/v3/kv/compaction", { revision: String(now) }, (await import("zod")).z.object({}).passthrough());
  let compactedAt = 0;
  const w2 = new EtcdWatch(client, { prefix: "/w/", startRevision: start }, { onEvents: () => {}, onCompacted: (r) => (compactedAt = r) });
  while (compactedAt === 0 && Date.now() < deadline + 5000) await Bun.sleep(20);
  await w2.stop();
  expect(compactedAt).toBe(now);
  const err = await client.range("/w/", { prefix: true, revision: start }).catch((e: unknown) => e);
  expect((err as EtcdError).compacted).toBe(true);
}, 15_000);

test("gotcha (issue #12): a keepalive that reaches a member during an etcd election is parked a second or more; one sent after it is answered at once", async () => {
  // three members of their own: kill the raft leader, keepalive a surviving member at once
  const three = await EtcdCluster.start(3);
  try {
    const lead = await three.leaderIndex();
    expect(lead).toBeGreaterThanOrEqual(0);
    const survivor = new EtcdClient({ endpoints: [three.endpoints[(lead + 1) % 3]!] });
    const lease = await survivor.leaseGrant(2);
    three.kill(lead);
    const t0 = performance.now();
    // etcd forwards it to the leader; with none, EtcdServer.waitLeader looks again only every
    // election timeout (1 s), so it is answered long after the election ended
    const during = survivor.leaseKeepAlive(lease.id, 8000).then((ttl) => ({ ttl, ms: performance.now() - t0 }));
    const deadline = performance.now() + 20_000;
    while ((await three.leaderIndex()) < 0 && performance.now() < deadline) await Bun.sleep(20);
    // a commit of the new term (its lessor is primary then); right after the election a member may
    // still answer "leader changed" once
    for (let i = 0; ; i++) {
      const ok = await survivor.put("/t/after-election", "1").then(() => true, (e: unknown) => (i < 20 ? false : Promise.reject(e)));
      if (ok) break;
      await Bun.sleep(100);
    }
    const t1 = performance.now();
    expect(await survivor.leaseKeepAlive(lease.id, 2000)).toBe(2);
    const afterMs = performance.now() - t1;
    const d = await during;
    expect(d.ttl).toBe(2); // the lease survived the election (the new leader refreshed it)
    expect(d.ms).toBeGreaterThanOrEqual(900);
    expect(afterMs).toBeLessThan(500);
  } finally {
    await three.stop();
  }
}, 60_000);

test("endpoint rotation: a dead endpoint first is skipped, the live one is preferred afterwards", async () => {
  const dead = "http://127.0.0.1:1";
  const c = new EtcdClient({ endpoints: [dead, etcd.endpoints[0]!], requestTimeoutMs: 500 });
  await c.put("/t/rotate", "1");
  expect(c.preferredEndpoint).toBe(etcd.endpoints[0]!);
  expect((await c.get("/t/rotate"))?.value).toBe("1");
});

test("timeouts: an endpoint that accepts and never answers fails within the request timeout", async () => {
  const silent: Server = createServer(() => {}); // accepts, says nothing
  await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
  const addr = silent.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  const c = new EtcdClient({ endpoints: [`http://127.0.0.1:${port}`], requestTimeoutMs: 300 });
  const t0 = performance.now();
  const err = await c.get("/t/x").catch((e: unknown) => e);
  const took = performance.now() - t0;
  silent.close();
  expect(err).toBeInstanceOf(EtcdError);
  expect((err as EtcdError).code).toBe("UNAVAILABLE");
  expect(took).toBeLessThan(1500);
});
