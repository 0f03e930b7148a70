// The cluster NBD CA in the MDM, in process (app.request, fake clock): the CA certificate is
// readable by a Monitor (public) and never carries the key; a Security user gets a client
// certificate for a public key it made (and only Security and SuperUser may; the call is audited);
// a bad key is refused and issues nothing; the CA survives an MDM restart and lives in replicated
// rows (HA); an SDC gets a server certificate naming the hosts it asked for, with its own node
// token only, and only once approved in restricted SDC mode. Revocation: every client certificate
// issued is listed (Monitor and Security may list, only Security and SuperUser revoke; audited);
// a revocation reaches SDCs in their maps (map version bumped, unexpired entries only); an unknown
// serial or name is NOT_FOUND; the number of revoked entries SDCs get is capped.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { Limits } from "../src/proto/limits.ts";
import { nbdClientCertTable } from "../src/store/mdm_schema.ts";
import { replicatedTables } from "../src/store/row_capture.ts";
import { ADMIN_PASSWORD, MdmFixture } from "./mdm_fixture.ts";

type Obj = Record<string, unknown>;
let m: MdmFixture;

beforeEach(async () => {
  m = await MdmFixture.open();
  await m.login();
});
afterEach(() => m.close());

function keyPair(): { publicKeyPem: string; privateKeyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return { publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(), privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
}



/** The fake clock's "now": certificates are checked at the time they were issued. */
const atIssue = () => m.clock.nowMs;

function verifies(certPem: string, caPem: string): boolean {
  const cert = new X509Certificate(certPem);
  const ca = new X509Certificate(caPem);
  return cert.checkIssued(ca) && cert.verify(ca.publicKey) && !cert.ca;
}

describe("the cluster NBD CA over REST", () => {
  test("a Monitor reads the CA certificate (no key in the answer); it is one CA, stable across calls", async () => {
    const mon = await m.userToken("watcher", "Monitor");
    const a = await m.as(mon, () => m.api("GET", "/pf/nbdCa"));
    expect(a.status).toBe(200);
    const body = a.json as Obj;
    const ca = new X509Certificate(body.caPem as string);
    expect(ca.ca).toBe(true);
    expect(ca.subject).toContain("pf-nbd-ca");
    expect(body.fingerprint256).toBe(ca.fingerprint256);
    expect(a.text).not.toContain("PRIVATE KEY");
    const b = await m.api("GET", "/pf/nbdCa");
    expect((b.json as Obj).caPem).toBe(body.caPem as string);
  });

  test("a Security user gets a client certificate for its own public key; the audit log records the call", async () => {
    const sec = await m.userToken("sec1", "Security");
    const k = keyPair();
    const r = await m.as(sec, () => m.api("POST", "/pf/nbdCa/issueClientCertificate", { name: "backup-host", publicKeyPem: k.publicKeyPem }));
    expect(r.status).toBe(200);
    const got = r.json as Obj;
    expect(r.text).not.toContain("PRIVATE KEY");
    const cert = new X509Certificate(got.certPem as string);
    expect(verifies(got.certPem as string, got.caPem as string)).toBe(true);
    expect(cert.subject).toContain("CN=pf-nbd-client backup-host");
    expect(cert.publicKey.export({ type: "spki", format: "pem" }).toString()).toBe(k.publicKeyPem);
    expect(cert.keyUsage).toContain("1.3.6.1.5.5.7.3.2"); // clientAuth
    expect(Date.parse(cert.validFrom)).toBeLessThanOrEqual(atIssue());
    expect(Date.parse(cert.validTo) - atIssue()).toBeGreaterThan(390 * 86_400_000);
    expect(got.caPem).toBe(((await m.api("GET", "/pf/nbdCa")).json as Obj).caPem as string);
    const audit = (await m.api("GET", "/pf/audit?limit=20")).json as Obj[];
    const rec = audit.find((x) => x.path === "/api/pf/nbdCa/issueClientCertificate");
    expect(rec).toMatchObject({ actor: "sec1", role: "Security", result: "ok", status: 200 });
    expect(rec?.params).toContain("backup-host");
  });

  test("only Security and SuperUser may issue: Monitor, Configure and Administrator get 403 (and the refusal is audited)", async () => {
    const k = keyPair();
    for (const role of ["Monitor", "Configure", "Administrator"]) {
      const t = await m.userToken(`u-${role.toLowerCase()}`, role);
      const r = await m.as(t, () => m.api("POST", "/pf/nbdCa/issueClientCertificate", { name: "x", publicKeyPem: k.publicKeyPem }));
      expect({ role, status: r.status }).toEqual({ role, status: 403 });
    }
    expect((await m.api("POST", "/pf/nbdCa/issueClientCertificate", { name: "by-admin", publicKeyPem: k.publicKeyPem })).status).toBe(200);
    const audit = (await m.api("GET", "/pf/audit?limit=50")).json as Obj[];
    expect(audit.filter((x) => x.path === "/api/pf/nbdCa/issueClientCertificate" && x.status === 403).length).toBe(3);
  });

  test("a private key, garbage or a bad name is refused with 400 and no certificate", async () => {
    const k = keyPair();
    const cases: Obj[] = [
      { name: "x", publicKeyPem: k.privateKeyPem },
      { name: "x", publicKeyPem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n" },
      { name: "bad name with spaces", publicKeyPem: k.publicKeyPem },
      { publicKeyPem: k.publicKeyPem },
    ];
    for (const body of cases) {
      const r = await m.api("POST", "/pf/nbdCa/issueClientCertificate", body);
      expect({ body: Object.keys(body), status: r.status, cert: r.text.includes("BEGIN CERTIFICATE") }).toEqual({ body: Object.keys(body), status: 400, cert: false });
    }
  });

  test("the CA survives an MDM restart on the same data dir, and its rows are replicated in HA mode", async () => {
    const before = ((await m.api("GET", "/pf/nbdCa")).json as Obj).caPem;
    const dir = m.dir;
    m.close({ keepDir: true });
    m = await MdmFixture.open({ dir });
    await m.login(ADMIN_PASSWORD);
    expect(((await m.api("GET", "/pf/nbdCa")).json as Obj).caPem).toBe(before as string);
    const rows = m.core.ctx.store.sqlite.query<{ name: string }, []>("SELECT name FROM mdm_secret WHERE name LIKE 'nbd-ca-%' ORDER BY name").all();
    expect(rows.map((r) => r.name)).toEqual(["nbd-ca-cert", "nbd-ca-key"]);
    // HA: the etcd metadata store ships every row of these tables (row_capture.ts)
    expect(replicatedTables(m.core.ctx.store.sqlite).map((t) => t.name)).toContain("mdm_secret");
  });
});

describe("an SDC's NBD server certificate (cluster API)", () => {
  test("names the hosts the SDC asked for, for the key it sent, signed by the cluster NBD CA", async () => {
    const sdcId = await m.joinSdc("guid-nbd-a", "hostA");
    const k = keyPair();
    const r = await m.cluster("POST", `/sdc/${sdcId}/nbdCertificate`, { publicKeyPem: k.publicKeyPem, hosts: ["10.1.2.3", "nbd-a.example", "127.0.0.1"] });
    expect(r.status).toBe(200);
    const got = r.json as Obj;
    const caPem = ((await m.api("GET", "/pf/nbdCa")).json as Obj).caPem as string;
    expect(got.caPem).toBe(caPem);
    expect(verifies(got.certPem as string, caPem)).toBe(true);
    const cert = new X509Certificate(got.certPem as string);
    expect(cert.subject).toContain(`pf-nbd sdc ${sdcId}`);
    expect(cert.checkIP("10.1.2.3")).toBe("10.1.2.3");
    expect(cert.checkHost("nbd-a.example")).toBe("nbd-a.example");
    expect(cert.checkHost("other.example")).toBeUndefined();
    expect(cert.publicKey.export({ type: "spki", format: "pem" }).toString()).toBe(k.publicKeyPem);
  });

  test("another SDC's token, no token, a wildcard or too many names: refused", async () => {
    const a = await m.joinSdc("guid-nbd-a", "hostA");
    const b = await m.joinSdc("guid-nbd-b", "hostB");
    const k = keyPair();
    const body = { publicKeyPem: k.publicKeyPem, hosts: ["127.0.0.1"] };
    const tokenOfB = (await m.cluster("POST", "/sdc/join", { guid: "guid-nbd-b", host: "127.0.0.1", name: "hostB" })).json as Obj;
    expect((await m.cluster("POST", `/sdc/${a}/nbdCertificate`, body, undefined, tokenOfB.nodeToken as string)).status).toBe(401);
    expect((await m.cluster("POST", `/sdc/${a}/nbdCertificate`, body, undefined, null)).status).toBe(401);
    expect((await m.cluster("POST", `/sdc/${b}/nbdCertificate`, { ...body, hosts: ["*.example"] })).status).toBe(400);
    expect((await m.cluster("POST", `/sdc/${b}/nbdCertificate`, { ...body, hosts: Array.from({ length: 17 }, (_, i) => `h${i}.example`) })).status).toBe(400);
    expect((await m.cluster("POST", `/sdc/${b}/nbdCertificate`, { ...body, hosts: [] })).status).toBe(400);
  });

  test("no SDC gets a certificate naming the address another SDC joined with (loopback names are everyone's)", async () => {
    const join = async (guid: string, host: string) => ((await m.cluster("POST", "/sdc/join", { guid, host, name: guid })).json as Obj).sdcId as string;
    const a = await join("guid-nbd-addr-a", "10.9.0.1");
    const b = await join("guid-nbd-addr-b", "10.9.0.2");
    const body = (hosts: string[]) => ({ publicKeyPem: keyPair().publicKeyPem, hosts });
    const refused = await m.cluster("POST", `/sdc/${b}/nbdCertificate`, body(["10.9.0.2", "10.9.0.1"]));
    expect(refused.status).toBe(400);
    expect((refused.json as Obj).message).toContain(`that is the address SDC ${a} (guid-nbd-addr-a) joined with`);
    // other spellings of the same address
    for (const h of ["::ffff:10.9.0.1", "::ffff:a09:1", "[::ffff:10.9.0.1]"]) expect((await m.cluster("POST", `/sdc/${b}/nbdCertificate`, body([h]))).status).toBe(400);
    expect((await m.cluster("POST", `/sdc/${b}/nbdCertificate`, body(["10.9.0.2", "127.0.0.1", "localhost"]))).status).toBe(200);
    expect((await m.cluster("POST", `/sdc/${a}/nbdCertificate`, body(["10.9.0.1", "127.0.0.1"]))).status).toBe(200);
    // a host reinstalled under a new GUID: the old record, Disconnected, does not hold its address
    m.clock.advance(3_600_000);
    const c = await join("guid-nbd-addr-c", "10.9.0.1");
    expect((await m.cluster("POST", `/sdc/${c}/nbdCertificate`, body(["10.9.0.1"]))).status).toBe(200);
  });

  test("restricted SDC mode: an unapproved SDC gets no NBD certificate until approveSdc", async () => {
    const systemId = (((await m.api("GET", "/types/System/instances")).json as Obj[])[0] as Obj).id as string;
    expect((await m.api("POST", `/instances/System::${systemId}/action/setRestrictedSdcMode`, { restrictedSdcMode: "Guid" })).status).toBe(200);
    const sdcId = await m.joinSdc("guid-nbd-new", "hostN");
    const body = { publicKeyPem: keyPair().publicKeyPem, hosts: ["127.0.0.1"] };
    const refused = await m.cluster("POST", `/sdc/${sdcId}/nbdCertificate`, body);
    expect(refused.status).toBeGreaterThanOrEqual(400);
    expect((refused.json as Obj).message as string).toContain("NOT_APPROVED");
    expect((await m.api("POST", `/instances/System::${systemId}/action/approveSdc`, { sdcGuid: "guid-nbd-new" })).status).toBe(200);
    expect((await m.cluster("POST", `/sdc/${sdcId}/nbdCertificate`, body)).status).toBe(200);
  });
});

describe("listing and revoking NBD client certificates", () => {
  const issueAs = async (token: string, name: string): Promise<string> => {
    const r = await m.as(token, () => m.api("POST", "/pf/nbdCa/issueClientCertificate", { name, publicKeyPem: keyPair().publicKeyPem }));
    expect(r.status).toBe(200);
    return (r.json as Obj).serialNumber as string;
  };
  const sdcMaps = async (sdcId: string): Promise<Obj> => {
    const r = await m.cluster("GET", `/sdc/${sdcId}/maps`);
    expect(r.status).toBe(200);
    return r.json as Obj;
  };

  test("every issued certificate is listed; a Monitor lists but may not revoke; Security revokes by serial, audited, and SDC maps carry it", async () => {
    const sec = await m.userToken("sec2", "Security");
    const mon = await m.userToken("mon2", "Monitor");
    const sdcId = await m.joinSdc("guid-rev-a", "hostR");
    const lost = await issueAs(sec, "lost-laptop");
    const keep = await issueAs(sec, "keeper");
    const list = (await m.as(mon, () => m.api("GET", "/pf/nbdCa/clientCertificates"))).json as Obj[];
    expect(list.map((x) => [x.name, x.state, x.issuedBy])).toEqual(expect.arrayContaining([["lost-laptop", "valid", "user sec2"], ["keeper", "valid", "user sec2"]]));
    const caFp = ((await m.api("GET", "/pf/nbdCa")).json as Obj).fingerprint256 as string;
    const lostRow = list.find((x) => x.serialNumber === lost) as Obj;
    expect(lostRow).toMatchObject({ caFingerprint256: caFp, revokedAt: null });
    expect((await m.as(sec, () => m.api("GET", "/pf/nbdCa/clientCertificates"))).status).toBe(200);

    const refused = await m.as(mon, () => m.api("POST", "/pf/nbdCa/revokeClientCertificate", { serialNumber: lost }));
    expect({ status: refused.status, pfCode: (refused.json as Obj).pfCode }).toEqual({ status: 403, pfCode: "FORBIDDEN" });
    expect((await sdcMaps(sdcId)).nbdRevoked).toEqual([]);

    const before = (await sdcMaps(sdcId)).mapVersion as number;
    const r = await m.as(sec, () => m.api("POST", "/pf/nbdCa/revokeClientCertificate", { serialNumber: lost.toLowerCase(), reason: "laptop lost" }));
    expect(r.status).toBe(200);
    const got = r.json as { revoked: Obj[]; alreadyRevoked: Obj[] };
    expect(got.revoked.map((x) => [x.serialNumber, x.state, x.revokedBy, x.revokeReason])).toEqual([[lost, "revoked", "user sec2", "laptop lost"]]);
    expect(got.alreadyRevoked).toEqual([]);
    const maps = await sdcMaps(sdcId);
    expect(maps.mapVersion as number).toBeGreaterThan(before);
    expect(maps.nbdRevoked).toEqual([{ serialNumber: lost, caFingerprint256: caFp, fingerprint256: lostRow.fingerprint256, name: "lost-laptop", revokedAtMs: m.clock.nowMs }]);
    const states = ((await m.api("GET", "/pf/nbdCa/clientCertificates")).json as Obj[]).map((x) => [x.serialNumber, x.state]);
    expect(states).toEqual(expect.arrayContaining([[lost, "revoked"], [keep, "valid"]]));

    const audit = (await m.api("GET", "/pf/audit?limit=50")).json as Obj[];
    const recs = audit.filter((x) => x.path === "/api/pf/nbdCa/revokeClientCertificate");
    expect(recs.map((x) => [x.actor, x.status])).toEqual(expect.arrayContaining([["mon2", 403], ["sec2", 200]]));
    expect(recs.find((x) => x.status === 200)?.params).toContain(lost.toLowerCase());
    // listing is a read: not audited
    expect(audit.some((x) => x.path === "/api/pf/nbdCa/clientCertificates")).toBe(false);

    // again: nothing changes, no map bump
    const again = await m.as(sec, () => m.api("POST", "/pf/nbdCa/revokeClientCertificate", { serialNumber: lost }));
    expect(((again.json as Obj).alreadyRevoked as Obj[]).map((x) => x.serialNumber)).toEqual([lost]);
    expect((await sdcMaps(sdcId)).mapVersion).toBe(maps.mapVersion as number);
  });

  test("revoke by name takes every unexpired certificate of that name; unknown serial or name: NOT_FOUND; both or neither: 400", async () => {
    const a = await issueAs(m.token, "gone-employee");
    const b = await issueAs(m.token, "gone-employee");
    const r = await m.api("POST", "/pf/nbdCa/revokeClientCertificate", { name: "gone-employee" });
    expect(r.status).toBe(200);
    expect(((r.json as Obj).revoked as Obj[]).map((x) => x.serialNumber).sort()).toEqual([a, b].sort());
    for (const body of [{ serialNumber: "0123ABCD" }, { name: "nobody" }]) {
      const nf = await m.api("POST", "/pf/nbdCa/revokeClientCertificate", body);
      expect({ body, pfCode: (nf.json as Obj).pfCode }).toEqual({ body, pfCode: "NOT_FOUND" });
    }
    for (const body of [{ serialNumber: a, name: "gone-employee" }, {}, { serialNumber: "not-hex" }]) {
      expect((await m.api("POST", "/pf/nbdCa/revokeClientCertificate", body)).status).toBe(400);
    }
  });

  test("SDCs get unexpired revocations only: after the certificate's end it leaves their maps (the row stays, revoked)", async () => {
    const sdcId = await m.joinSdc("guid-rev-b", "hostE");
    const serial = await issueAs(m.token, "short-lived");
    expect((await m.api("POST", "/pf/nbdCa/revokeClientCertificate", { serialNumber: serial })).status).toBe(200);
    expect(((await sdcMaps(sdcId)).nbdRevoked as Obj[]).map((x) => x.serialNumber)).toEqual([serial]);
    m.clock.advance(398 * 86_400_000);
    await m.login(ADMIN_PASSWORD);
    expect((await sdcMaps(sdcId)).nbdRevoked).toEqual([]);
    const row = ((await m.api("GET", "/pf/nbdCa/clientCertificates")).json as Obj[]).find((x) => x.serialNumber === serial);
    expect(row?.state).toBe("revoked");
    // the table is replicated in HA mode (row_capture.ts), so a revocation survives a takeover
    expect(replicatedTables(m.core.ctx.store.sqlite).map((t) => t.name)).toContain("nbd_client_cert");
  });

  /** n recorded certificates valid for one day from now (revoked or not), written straight to the table */
  const bulkRows = (n: number, revoked: boolean): void => {
    const now = m.clock.nowMs;
    const rows = Array.from({ length: n }, (_, i) => ({
      serial: `FF${i.toString(16).padStart(8, "0").toUpperCase()}`,
      name: "bulk",
      fingerprint256: `fp-${i}`,
      caFingerprint256: "ca",
      notBeforeMs: now,
      notAfterMs: now + 86_400_000,
      issuedBy: "test",
      issuedAtMs: now,
      ...(revoked ? { revokedAtMs: now, revokedBy: "test" } : {}),
    }));
    for (let i = 0; i < rows.length; i += 200) m.core.ctx.store.db.insert(nbdClientCertTable).values(rows.slice(i, i + 200)).run();
  };

  test("the revoked entries SDCs get are capped: a revocation past Limits.nbdRevokedCertsMax is refused, nothing written", async () => {
    const sdcId = await m.joinSdc("guid-rev-c", "hostC");
    bulkRows(Limits.nbdRevokedCertsMax, true);
    const serial = await issueAs(m.token, "one-too-many");
    const r = await m.api("POST", "/pf/nbdCa/revokeClientCertificate", { serialNumber: serial });
    expect((r.json as Obj).pfCode).toBe("TOO_BIG");
    expect(((await m.api("GET", "/pf/nbdCa/clientCertificates")).json as Obj[]).find((x) => x.serialNumber === serial)?.state).toBe("valid");
    expect(((await sdcMaps(sdcId)).nbdRevoked as Obj[]).length).toBe(Limits.nbdRevokedCertsMax);
  });

  test("the table is capped at Limits.nbdClientCertRowsMax: an issue past it is TOO_BIG; rows expired 90 days are pruned and make room", async () => {
    bulkRows(Limits.nbdClientCertRowsMax, false);
    const k = keyPair();
    const full = await m.api("POST", "/pf/nbdCa/issueClientCertificate", { name: "no-room", publicKeyPem: k.publicKeyPem });
    expect({ pfCode: (full.json as Obj).pfCode, cert: full.text.includes("BEGIN CERTIFICATE") }).toEqual({ pfCode: "TOO_BIG", cert: false });
    m.clock.advance(92 * 86_400_000); // the bulk rows ended a day after "now"
    await m.login(ADMIN_PASSWORD);
    expect((await m.api("POST", "/pf/nbdCa/issueClientCertificate", { name: "room-again", publicKeyPem: k.publicKeyPem })).status).toBe(200);
    const names = ((await m.api("GET", "/pf/nbdCa/clientCertificates")).json as Obj[]).map((x) => x.name);
    expect(names).toEqual(["room-again"]);
  });
});
