// The cluster NBD CA in HA mode (in process, one etcd member, two MDMs): the CA the active MDM
// makes reaches the standby through etcd (its mdm_secret rows), a standby sends NBD CA calls to
// the active MDM (421), and after the active MDM is gone the new one serves the same CA and signs
// client certificates that verify against it: certificates issued before a takeover stay valid,
// and one revoked before it stays revoked (the nbd_client_cert rows are replicated too).

import { afterAll, beforeAll, expect, test } from "bun:test";
import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { nbdRevokedForSdcs } from "../src/mdm/core/nbd_client_certs.ts";
import { MdmFixture } from "./mdm_fixture.ts";
import { MdmPairOnEtcd, waitUntil } from "./helpers/etcd.ts";

type Obj = Record<string, unknown>;

let pair: MdmPairOnEtcd;
let a: MdmFixture | null = null;
let b: MdmFixture;


const storedCa = (m: MdmFixture) =>
  m.core.ctx.store.sqlite.query<{ valueHex: string }, []>("SELECT value_hex AS valueHex FROM mdm_secret WHERE name = 'nbd-ca-cert'").get()?.valueHex ?? null;

beforeAll(async () => {
  ({ pair, a, b } = await MdmPairOnEtcd.start("nbdca"));
}, 60_000);

afterAll(async () => {
  await pair?.close();
});

test("the NBD CA made by the active MDM is the one the next active MDM signs with", async () => {
  const first = a!;
  expect(first.core.ctx.meta.isLeader()).toBe(true);
  expect(b.core.ctx.meta.isLeader()).toBe(false);
  await first.login();
  const got = await first.api("GET", "/pf/nbdCa");
  expect(got.status).toBe(200);
  const caPem = (got.json as Obj).caPem as string;
  const keyOf = () => generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey.export({ type: "spki", format: "pem" }).toString();
  const lost = await first.api("POST", "/pf/nbdCa/issueClientCertificate", { name: "lost-before-takeover", publicKeyPem: keyOf() });
  const lostSerial = (lost.json as Obj).serialNumber as string;
  expect((await first.api("POST", "/pf/nbdCa/revokeClientCertificate", { serialNumber: lostSerial, reason: "lost" })).status).toBe(200);
  // the standby follows the rows by watch, and sends the call itself to the active MDM
  await waitUntil("the standby to hold the NBD CA rows", 10_000, () => storedCa(b) !== null);
  expect(Buffer.from(storedCa(b)!, "hex").toString("utf8")).toBe(caPem);
  b.token = first.token;
  expect((await b.api("GET", "/pf/nbdCa")).status).toBe(421);
  // the active MDM goes away; the standby takes over and signs with the same CA
  await first.closeAll({ keepDir: true });
  a = null;
  await waitUntil("m2 to lead", 20_000, () => b.core.ctx.meta.isLeader());
  await b.login();
  expect(((await b.api("GET", "/pf/nbdCa")).json as Obj).caPem).toBe(caPem);
  // the revocation made by the old active MDM holds on the new one, and its SDCs get it
  const listed = ((await b.api("GET", "/pf/nbdCa/clientCertificates")).json as Obj[]).find((x) => x.serialNumber === lostSerial);
  expect(listed).toMatchObject({ name: "lost-before-takeover", state: "revoked", revokeReason: "lost" });
  expect(nbdRevokedForSdcs(b.core.ctx).map((e) => e.serialNumber)).toEqual([lostSerial]);
  const publicKeyPem = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey.export({ type: "spki", format: "pem" }).toString();
  const issued = await b.api("POST", "/pf/nbdCa/issueClientCertificate", { name: "after-takeover", publicKeyPem });
  expect(issued.status).toBe(200);
  const cert = new X509Certificate((issued.json as Obj).certPem as string);
  expect(cert.verify(new X509Certificate(caPem).publicKey)).toBe(true);
}, 60_000);
