// The SDC's side of cluster-issued NBD certificates (src/sdc/nbd_cluster_cert.ts), against an
// in-process MDM served on a loopback port: an empty directory is the cluster's; the SDC writes
// the nbdkit layout with the cluster NBD CA and a server certificate for its own key; the next
// start keeps the key and gets a new certificate; a directory with the operator's ca-cert.pem is
// left alone; an unapproved SDC (restricted SDC mode) waits and gets its certificate once approved.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nodeTokenOf } from "../src/mdm/core/dataplane_secrets.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import type { MdmEndpoint } from "../src/proto/mdm_http.ts";
import { generateSelfSignedCert } from "../src/proto/tls_cert.ts";
import { clusterNbdTls } from "../src/sdc/nbd_cluster_cert.ts";
import { runSdc, type SdcHandle } from "../src/sdc/main.ts";
import { nbdTlsSource } from "../src/sdc/nbd_tls.ts";
import { freePort } from "./helpers/cluster.ts";
import { MdmFixture, SECRET } from "./mdm_fixture.ts";

type Obj = Record<string, unknown>;
let m: MdmFixture;
let server: ReturnType<typeof Bun.serve>;
let dir: string;

beforeAll(async () => {
  m = await MdmFixture.open();
  await m.login();
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: m.core.app.fetch });
  dir = mkdtempSync(join(tmpdir(), "pf-sdc-nbdcert-"));
});

afterAll(async () => {
  await server?.stop(true);
  m?.close();
  rmSync(dir, { recursive: true, force: true });
});

function endpoint(sdcId: string): MdmEndpoint {
  return { url: `http://127.0.0.1:${server.port}`, clusterSecret: SECRET, nodeToken: nodeTokenOf(m.core.ctx, NodeRole.SDC, sdcId), timeoutMs: 5000 };
}

test("an empty directory gets the cluster NBD CA and a server certificate for the SDC's key; the next start keeps the key", async () => {
  const sdcId = await m.joinSdc("guid-sdc-cert", "sdcA");
  const tlsDir = join(dir, "a");
  expect(nbdTlsSource(tlsDir)).toBe("cluster");
  const opts = { mode: "require" as const, dir: tlsDir, verifyPeer: true, listenHost: "127.0.0.7", address: "sdc-a.example", mdm: endpoint(sdcId), sdcId, systemId: m.core.ctx.systemId };
  const first = await clusterNbdTls(opts);
  const caPem = ((await m.api("GET", "/pf/nbdCa")).json as Obj).caPem as string;
  expect(first.caPem).toBe(caPem);
  expect(readFileSync(join(tlsDir, "ca-cert.pem"), "utf8")).toBe(caPem);
  expect(existsSync(join(tlsDir, "ca-key.pem"))).toBe(false);
  expect(statSync(join(tlsDir, "server-key.pem")).mode & 0o777).toBe(0o600);
  const cert = new X509Certificate(readFileSync(join(tlsDir, "server-cert.pem")));
  expect(cert.checkIssued(new X509Certificate(caPem))).toBe(true);
  expect(cert.checkIP("127.0.0.7")).toBe("127.0.0.7");
  expect(cert.checkHost("sdc-a.example")).toBe("sdc-a.example");
  const note = JSON.parse(readFileSync(join(tlsDir, "cluster-issued.json"), "utf8")) as Obj;
  expect(note).toMatchObject({ sdcId, systemId: m.core.ctx.systemId });
  expect(nbdTlsSource(tlsDir)).toBe("cluster");
  // a restart: same key, a new certificate
  const again = await clusterNbdTls(opts);
  expect(again.keyPem).toBe(first.keyPem);
  expect(new X509Certificate(again.certPem).serialNumber).not.toBe(cert.serialNumber);
});

test("a directory holding the operator's ca-cert.pem (no cluster-issued.json) is the operator's: pf sdc uses it as it is", () => {
  const own = join(dir, "own");
  rmSync(own, { recursive: true, force: true });
  const ca = generateSelfSignedCert({ commonName: "operator-ca", hosts: [] });
  mkdirSync(own, { recursive: true });
  writeFileSync(join(own, "ca-cert.pem"), ca.certPem);
  writeFileSync(join(own, "ca-key.pem"), ca.keyPem, { mode: 0o600 });
  expect(nbdTlsSource(own)).toBe("operator");
});

test("restricted SDC mode: an unapproved SDC waits, and gets its certificate once approveSdc ran", async () => {
  const systemId = m.core.ctx.systemId;
  expect((await m.api("POST", `/instances/System::${systemId}/action/setRestrictedSdcMode`, { restrictedSdcMode: "Guid" })).status).toBe(200);
  const sdcId = await m.joinSdc("guid-sdc-unapproved", "sdcU");
  let waits = 0;
  const got = await clusterNbdTls({
    mode: "on",
    dir: join(dir, "u"),
    verifyPeer: false,
    listenHost: "127.0.0.1",
    address: "127.0.0.1",
    mdm: endpoint(sdcId),
    sdcId,
    systemId,
    sleep: async () => {
      waits++;
      expect((await m.api("POST", `/instances/System::${systemId}/action/approveSdc`, { sdcGuid: "guid-sdc-unapproved" })).status).toBe(200);
    },
  });
  expect(waits).toBe(1);
  expect(new X509Certificate(got.certPem).checkIP("127.0.0.1")).toBe("127.0.0.1");
});

test("an MDM without the NBD certificate call (an older pf): the SDC stops with a message naming both ways out", async () => {
  const sdcId = await m.joinSdc("guid-sdc-old-mdm", "sdcO");
  // the real MDM, with the new path renamed away: what an older MDM answers (its cluster API 404)
  const old = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req) => {
      const u = new URL(req.url);
      u.pathname = u.pathname.replace(/nbdCertificate$/, "nbdCertificateUnknown");
      return m.core.app.fetch(new Request(u.toString(), req));
    },
  });
  try {
    const ep = { ...endpoint(sdcId), url: `http://127.0.0.1:${old.port}` };
    const tlsDir = join(dir, "o");
    const run = clusterNbdTls({ mode: "require", dir: tlsDir, verifyPeer: false, listenHost: "127.0.0.1", address: "127.0.0.1", mdm: ep, sdcId, systemId: m.core.ctx.systemId });
    await expect(run).rejects.toThrow(/issues no NBD certificates \(an older pf\): upgrade it, or put your own ca-cert.pem and ca-key.pem/);
    expect(existsSync(join(tlsDir, "server-cert.pem"))).toBe(false);
  } finally {
    await old.stop(true);
  }
});

test("an MDM cluster with no leader for a while (NOT_LEADER from every member), then one: the SDC waits and gets its certificate", async () => {
  const sdcId = await m.joinSdc("guid-sdc-election", "sdcE");
  // restricted SDC mode is on since the test above
  expect((await m.api("POST", `/instances/System::${m.core.ctx.systemId}/action/approveSdc`, { sdcGuid: "guid-sdc-election" })).status).toBe(200);
  let refused = 0;
  // a standby that names no leader answers 421 NOT_LEADER; the third call finds a leader
  const electing = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req) => {
      if (new URL(req.url).pathname.endsWith("nbdCertificate") && refused < 2) {
        refused++;
        return Response.json({ message: "this MDM is a standby and knows no leader", httpStatusCode: 421, pfCode: "NOT_LEADER", leader: null }, { status: 421 });
      }
      return m.core.app.fetch(req);
    },
  });
  try {
    const ep = { ...endpoint(sdcId), url: `http://127.0.0.1:${electing.port}` };
    const got = await clusterNbdTls({ mode: "on", dir: join(dir, "e"), verifyPeer: false, listenHost: "127.0.0.1", address: "127.0.0.1", mdm: ep, sdcId, systemId: m.core.ctx.systemId });
    expect(refused).toBe(2);
    expect(new X509Certificate(got.certPem).checkIP("127.0.0.1")).toBe("127.0.0.1");
  } finally {
    await electing.stop(true);
  }
});

test("pf sdc waiting for its approval heartbeats meanwhile: Connected and not approved, not Disconnected; NBD starts once approved", async () => {
  const systemId = m.core.ctx.systemId;
  expect((await m.api("POST", `/instances/System::${systemId}/action/setRestrictedSdcMode`, { restrictedSdcMode: "Guid" })).status).toBe(200);
  const guid = "guid-sdc-waiting";
  let handle: SdcHandle | null = null;
  const starting = runSdc({
    mdm: { url: `http://127.0.0.1:${server.port}`, clusterSecret: SECRET },
    guid,
    name: "sdcW",
    address: "127.0.0.1",
    nbdHost: "127.0.0.1",
    nbdPort: await freePort(),
    nbdTls: { mode: "require", explicit: true, dir: join(dir, "w"), verifyPeer: false },
  }).then((h) => (handle = h));
  try {
    const sdc = async () => ((await m.api("GET", "/types/Sdc/instances")).json as Obj[]).find((x) => x.sdcGuid === guid);
    for (let i = 0; i < 100 && (await sdc()) === undefined; i++) await Bun.sleep(50);
    // its join is long past (the MDM's clock moves a minute): only heartbeats keep it Connected
    m.clock.advance(60_000);
    let me: Obj | undefined;
    for (let i = 0; i < 40; i++) {
      me = await sdc();
      if (me?.mdmConnectionState === "Connected") break;
      await Bun.sleep(100);
    }
    expect(me).toMatchObject({ sdcApproved: false, mdmConnectionState: "Connected" });
    expect(handle).toBeNull(); // still waiting for its certificate: no NBD yet
    expect((await m.api("POST", `/instances/System::${systemId}/action/approveSdc`, { sdcGuid: guid })).status).toBe(200);
    await starting;
    expect(handle).not.toBeNull();
  } finally {
    await starting.catch(() => undefined);
    await (handle as SdcHandle | null)?.stop();
  }
}, 30_000);
