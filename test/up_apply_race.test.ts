// pf up's topology step against an MDM where a joining SDS creates the protection domain or the
// pool between pf up's look-up and its create (the race seen when a data host starts while the
// MDM host's pf up is still creating the topology). A scripted MDM on 127.0.0.1 answers like the
// real one: the object appears in its lists at the moment our create is refused ALREADY_EXISTS.
// pf up must use the object the join made, not fail; a pool the join made with other settings
// than the file's is named in a warning.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { consola } from "consola";
import { applyClusterObjects } from "../src/cmd/up_apply.ts";
import { parseClusterConfig } from "../src/proto/cluster_config.ts";

interface Obj {
  id: string;
  name: string;
  protectionDomainId?: string;
  extentSizeInKb?: number;
  allocationGranularityInKb?: number;
}

const objects: Record<string, Obj[]> = { ProtectionDomain: [], StoragePool: [], FaultSet: [] };
const creates: string[] = [];
let server: ReturnType<typeof Bun.serve>;

/** what a joining SDS creates first (findOrCreatePd / findOrCreatePool: the MDM's default pool settings) */
let sdsJoins = (): void => {
  objects.ProtectionDomain!.push({ id: "pd-by-join", name: "pd1" });
  objects.StoragePool!.push({ id: "sp-by-join", name: "sp1", protectionDomainId: "pd-by-join", extentSizeInKb: 65536, allocationGranularityInKb: 65536 });
};

const yaml = `
cluster: { name: race }
mdm: { port: 6611, plainHttp: true }
hosts:
  - { name: m1, address: 127.0.0.1, mdm: true, sds: [{ name: sds1, pool: pd1/sp1, devices: [{ path: d.img, size: 64MiB }] }] }
protectionDomains:
  - name: pd1
    storagePools: [{ name: sp1, extentSize: 16MiB, granularity: 64MiB }]
volumes: []
`;

beforeAll(() => {
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const m = /^\/api\/types\/(\w+)\/instances$/.exec(new URL(req.url).pathname);
      const type = m?.[1];
      if (type === undefined || !(type in objects)) return Response.json({ message: "no such route", pfCode: "NOT_FOUND" }, { status: 404 });
      if (req.method === "GET") return Response.json(objects[type]);
      creates.push(type);
      // the SDS's join committed first: our create meets the unique name
      sdsJoins();
      const { name } = (await req.json()) as { name: string };
      return Response.json({ message: `A ${type} named ${name} already exists`, pfCode: "ALREADY_EXISTS", errorCode: 500, httpStatusCode: 500 }, { status: 500 });
    },
  });
});

afterAll(() => {
  server.stop(true);
});

async function applyLogged(): Promise<{ infos: string[]; warnings: string[] }> {
  const config = parseClusterConfig(yaml, "race.yaml");
  const warnings: string[] = [];
  const infos: string[] = [];
  const restore = { warn: consola.warn, info: consola.info };
  consola.warn = ((m: string) => void warnings.push(String(m))) as typeof consola.warn;
  consola.info = ((m: string) => void infos.push(String(m))) as typeof consola.info;
  try {
    await applyClusterObjects({ url: `http://127.0.0.1:${server.port}` }, config, "structure");
  } finally {
    consola.warn = restore.warn;
    consola.info = restore.info;
  }
  return { infos, warnings };
}

test("pf up's topology step uses the protection domain and pool a joining SDS created meanwhile, and warns that the pool's extent size differs from the file", async () => {
  const { infos, warnings } = await applyLogged();
  // the PD create was refused; the pool was already listed when pf up came to it (no create)
  expect(creates).toEqual(["ProtectionDomain"]);
  expect(infos.some((l) => l.includes("protection domain pd1 was created meanwhile by a joining SDS (pd-by-join)"))).toBe(true);
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toContain("storage pool pd1/sp1 (sp-by-join) exists with extent size 65536 KiB, the file says 16384 KiB");
  expect(infos.at(-1)).toContain("topology of 1 protection domain(s) is in place");
});

test("pf up's pool create that meets ALREADY_EXISTS uses the pool made meanwhile (same settings: no warning)", async () => {
  objects.ProtectionDomain = [{ id: "pd-a", name: "pd1" }];
  objects.StoragePool = [];
  creates.length = 0;
  sdsJoins = () => void objects.StoragePool!.push({ id: "sp-by-join", name: "sp1", protectionDomainId: "pd-a", extentSizeInKb: 16384, allocationGranularityInKb: 65536 });
  const { infos, warnings } = await applyLogged();
  expect(creates).toEqual(["StoragePool"]);
  expect(infos.some((l) => l.includes("storage pool pd1/sp1 was created meanwhile by a joining SDS (sp-by-join)"))).toBe(true);
  expect(warnings).toEqual([]);
});
