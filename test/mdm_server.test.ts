// The MDM as a server: HTTPS with the in-process self-signed certificate verified by the shared
// client (src/proto/mdm_http.ts), plain HTTP only on loopback, secrets files, and persistence
// across stop/start and across kill -9 of a child process.

import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { runMdm, type MdmHandle } from "../src/mdm/main.ts";
import { ClusterPaths, SdcJoinResponse, SdsJoinResponse } from "../src/proto/cluster_api.ts";
import { isPfError, PfError } from "../src/proto/errors.ts";
import { clusterRequest, mdmRequest, type MdmEndpoint } from "../src/proto/mdm_http.ts";
import { CreatedId } from "../src/proto/powerflex_api.ts";
import { GiB } from "./mdm_fixture.ts";

const dirs: string[] = [];
const handles: MdmHandle[] = [];
function freshDir(): string {
  const d = mkdtempSync(join(tmpdir(), "pf-mdm-srv-"));
  dirs.push(d);
  return d;
}
async function start(opts: Parameters<typeof runMdm>[0]): Promise<MdmHandle> {
  const h = await runMdm(opts);
  handles.push(h);
  return h;
}
afterEach(async () => {
  for (const h of handles.splice(0)) await h.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const Token = z.string();
const AnyJson = z.unknown();
const Volumes = z.array(z.object({ id: z.string(), name: z.string().nullable(), sizeInKb: z.number() }));

async function login(h: MdmHandle, password: string): Promise<MdmEndpoint> {
  const res = await fetch(`${h.url}/api/login`, {
    headers: { authorization: `Basic ${Buffer.from(`admin:${password}`).toString("base64")}` },
    tls: { ca: h.certPem ?? undefined },
  } as RequestInit);
  expect(res.status).toBe(200);
  const token = Token.parse(await res.json());
  return { url: h.url, caPem: h.certPem, token, clusterSecret: h.clusterSecret };
}

async function joinThreeSds(ep: MdmEndpoint): Promise<void> {
  for (let i = 1; i <= 3; i++) {
    await clusterRequest(ep, {
      method: "POST",
      path: ClusterPaths.sdsJoin,
      body: { name: `sds${i}`, host: "127.0.0.1", dataPort: 7100 + i, protectionDomainName: "pd1", storagePoolName: "sp1", devices: [{ path: `/dev/x${i}`, capacityBytes: 1000 * GiB }] },
      schema: SdsJoinResponse,
    });
  }
}

describe("HTTPS server", () => {
  test("serves HTTPS on 127.0.0.1 with a generated certificate the shared client verifies", async () => {
    const dir = freshDir();
    const h = await start({ dataDir: dir, listenHost: "127.0.0.1", listenPort: 0 });
    expect(h.url).toBe(`https://127.0.0.1:${h.port}`);
    expect(h.port).toBeGreaterThan(0);
    expect(h.certPem).toContain("BEGIN CERTIFICATE");
    expect(h.certFile).toBe(join(dir, "tls", "cert.pem"));
    expect(readFileSync(h.certFile!, "utf8")).toBe(h.certPem!);
    // generated secrets are saved mode 0600
    expect(h.adminPassword).toBeTruthy();
    expect(readFileSync(join(dir, "admin-password"), "utf8").trim()).toBe(h.adminPassword!);
    expect(statSync(join(dir, "admin-password")).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, "cluster-secret"), "utf8").trim()).toBe(h.clusterSecret);
    expect(statSync(join(dir, "cluster-secret")).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "tls", "key.pem")).mode & 0o777).toBe(0o600);

    const ep = await login(h, h.adminPassword!);
    expect(await mdmRequest(ep, { method: "GET", path: "/api/version", schema: z.string() })).toBe("3.6");
    const pd = await mdmRequest(ep, { method: "POST", path: "/api/types/ProtectionDomain/instances", body: { name: "pd1" }, schema: CreatedId });
    expect(pd.id).toMatch(/^[0-9a-f]{16}$/);
    // errors come back typed through pfCode
    const dup = await mdmRequest(ep, { method: "POST", path: "/api/types/ProtectionDomain/instances", body: { name: "pd1" }, schema: CreatedId }).catch((e: unknown) => e);
    expect(isPfError(dup) && dup.code).toBe("ALREADY_EXISTS");
    // the cluster API over the same port
    const sdc = await clusterRequest(ep, { method: "POST", path: ClusterPaths.sdcJoin, body: { guid: "g", host: "127.0.0.1" }, schema: SdcJoinResponse });
    expect(sdc.sdcId).toMatch(/^[0-9a-f]{16}$/);
    const wrong = await clusterRequest({ ...ep, clusterSecret: "not-the-secret" }, { method: "POST", path: ClusterPaths.sdcJoin, body: { guid: "g", host: "127.0.0.1" }, schema: SdcJoinResponse }).catch((e: unknown) => e);
    expect(isPfError(wrong) && wrong.code).toBe("UNAUTHORIZED");
    // a client holding another certificate refuses the connection
    const other = freshDir();
    const h2 = await start({ dataDir: other, listenHost: "127.0.0.1", listenPort: 0 });
    const mismatch = await mdmRequest({ url: h.url, caPem: h2.certPem }, { method: "GET", path: "/api/version", schema: z.string() }).catch((e: unknown) => e);
    expect(isPfError(mismatch) && mismatch.code).toBe("UNAVAILABLE");
  });

  test("plain HTTP is refused on a non-loopback address and served on loopback", async () => {
    const dir = freshDir();
    const refused = await runMdm({ dataDir: dir, listenHost: "0.0.0.0", listenPort: 0, plainHttp: true }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(PfError);
    expect((refused as PfError).code).toBe("BAD_REQUEST");
    expect((refused as PfError).message).toContain("only allowed on a loopback address");
    const h = await start({ dataDir: dir, listenHost: "127.0.0.1", listenPort: 0, plainHttp: true, adminPassword: "pw-123456" });
    expect(h.url.startsWith("http://127.0.0.1:")).toBe(true);
    expect(h.certPem).toBeNull();
    const ep = await (async () => {
      const res = await fetch(`${h.url}/api/login`, { headers: { authorization: `Basic ${Buffer.from("admin:pw-123456").toString("base64")}` } });
      return { url: h.url, token: Token.parse(await res.json()) } satisfies MdmEndpoint;
    })();
    expect(await mdmRequest(ep, { method: "GET", path: "/api/types/System/instances", schema: z.array(AnyJson) })).toHaveLength(1);
  });

  test("cert and key files given by options are served; one without the other is refused", async () => {
    const first = freshDir();
    const h1 = await start({ dataDir: first, listenHost: "127.0.0.1", listenPort: 0 });
    await h1.stop();
    const dir = freshDir();
    const half = await runMdm({ dataDir: dir, listenHost: "127.0.0.1", listenPort: 0, tlsCertFile: join(first, "tls", "cert.pem") }).catch((e: unknown) => e);
    expect((half as PfError).code).toBe("BAD_REQUEST");
    const h = await start({ dataDir: dir, listenHost: "127.0.0.1", listenPort: 0, tlsCertFile: join(first, "tls", "cert.pem"), tlsKeyFile: join(first, "tls", "key.pem") });
    expect(h.certPem).toBe(h1.certPem);
    expect(await mdmRequest({ url: h.url, caPem: h1.certPem }, { method: "GET", path: "/api/version", schema: z.string() })).toBe("3.6");
  });
});

describe("persistence", () => {
  test("stop and start on the same data dir keeps objects, tokens, the certificate and the secrets", async () => {
    const dir = freshDir();
    const h1 = await start({ dataDir: dir, listenHost: "127.0.0.1", listenPort: 0 });
    const ep1 = await login(h1, h1.adminPassword!);
    await joinThreeSds(ep1);
    const pool = await mdmRequest(ep1, { method: "POST", path: "/api/types/StoragePool/instances/action/queryIdByKey", body: { name: "sp1" }, schema: z.string() });
    for (let i = 0; i < 5; i++) {
      await mdmRequest(ep1, { method: "POST", path: "/api/types/Volume/instances", body: { storagePoolId: pool, volumeSizeInGb: "8", name: `v${i}`, volumeType: "ThickProvisioned" }, schema: CreatedId });
    }
    const sys1 = await mdmRequest(ep1, { method: "GET", path: "/api/types/System/instances", schema: z.array(z.object({ id: z.string() })) });
    await h1.stop();

    const h2 = await start({ dataDir: dir, listenHost: "127.0.0.1", listenPort: 0 });
    expect(h2.certPem).toBe(h1.certPem);
    expect(h2.clusterSecret).toBe(h1.clusterSecret);
    expect(h2.adminPassword).toBe(h1.adminPassword);
    const ep2 = { ...ep1, url: h2.url }; // the old token still works
    const vols = await mdmRequest(ep2, { method: "GET", path: "/api/types/Volume/instances", schema: Volumes });
    expect(vols.map((v) => v.name).sort()).toEqual(["v0", "v1", "v2", "v3", "v4"]);
    const sys2 = await mdmRequest(ep2, { method: "GET", path: "/api/types/System/instances", schema: z.array(z.object({ id: z.string() })) });
    expect(sys2[0]?.id).toBe(sys1[0]!.id);
    // SDSs rejoin with their old ids; new ids continue the counter
    await joinThreeSds(ep2);
    const v5 = await mdmRequest(ep2, { method: "POST", path: "/api/types/Volume/instances", body: { storagePoolId: pool, volumeSizeInGb: "8", name: "v5" }, schema: CreatedId });
    expect(vols.map((v) => v.id)).not.toContain(v5.id);
  });

  test("kill -9 of a running MDM loses no acknowledged change", async () => {
    const dir = freshDir();
    const child = Bun.spawn([process.execPath, join(import.meta.dir, "mdm_child.ts"), dir], { stdout: "pipe", stderr: "pipe" });
    try {
      const reader = child.stdout.getReader();
      let text = "";
      while (!text.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`MDM child exited early: ${await new Response(child.stderr).text()}`);
        text += new TextDecoder().decode(value);
      }
      const info = JSON.parse(text.slice(0, text.indexOf("\n"))) as { url: string; certPem: string; clusterSecret: string };
      const h = { url: info.url, certPem: info.certPem, clusterSecret: info.clusterSecret } as MdmHandle;
      const ep = await login(h, "child-pass-1");
      await joinThreeSds(ep);
      const pool = await mdmRequest(ep, { method: "POST", path: "/api/types/StoragePool/instances/action/queryIdByKey", body: { name: "sp1" }, schema: z.string() });
      const sdc = await clusterRequest(ep, { method: "POST", path: ClusterPaths.sdcJoin, body: { guid: "g-kill", host: "127.0.0.1" }, schema: SdcJoinResponse });
      const acked: string[] = [];
      for (let i = 0; i < 40; i++) {
        const v = await mdmRequest(ep, { method: "POST", path: "/api/types/Volume/instances", body: { storagePoolId: pool, volumeSizeInGb: "2", name: `k${i}`, volumeType: "ThinProvisioned" }, schema: CreatedId });
        acked.push(v.id);
        if (i % 2 === 0) await mdmRequest(ep, { method: "POST", path: `/api/instances/Volume::${v.id}/action/addMappedSdc`, body: { sdcId: sdc.sdcId }, schema: AnyJson });
      }
      child.kill(9);
      await child.exited;

      const h2 = await start({ dataDir: dir, listenHost: "127.0.0.1", listenPort: 0, clusterSecret: "child-cluster-secret-123" });
      const ep2 = { ...ep, url: h2.url };
      const vols = await mdmRequest(ep2, { method: "GET", path: "/api/types/Volume/instances", schema: z.array(z.object({ id: z.string(), mappedSdcInfo: z.array(AnyJson).nullable() })) });
      expect(vols.map((v) => v.id).sort()).toEqual([...acked].sort());
      expect(vols.filter((v) => v.mappedSdcInfo !== null).length).toBe(20);
      const maps = await clusterRequest({ ...ep2, nodeToken: sdc.nodeToken }, { method: "GET", path: ClusterPaths.sdcMaps(sdc.sdcId), schema: z.object({ volumes: z.array(z.object({ extents: z.array(AnyJson) })) }) });
      expect(maps.volumes.length).toBe(20);
      for (const v of maps.volumes) expect(v.extents.length).toBe(32);
    } finally {
      child.kill(9);
    }
  }, 60_000);
});
