// REST fuzz cases against the MDM's API (real HTTPS, a valid admin token on every request):
// paths from the route table with one segment off (types, ids, actions, children, encodings),
// query strings, content types, and bodies: the valid body of a route with one field replaced,
// dropped or added, random JSON, broken JSON, deep nesting, an oversized body. A case is
// symbolic ({play}, {pool}, … are filled in at run time) so that the corpus replays on any
// cluster. Pass: an answer within the deadline that is not an INTERNAL error (a 500 whose
// pfCode is INTERNAL means an exception escaped a handler), and the MDM still answers.
// Only sacrificial objects are named where a request could change something: fzplay (which
// the run may break), the fuzzer's own SDC, new objects; never fzkeep, fzlive, an SDS or the
// real SDC (their ids are not in the dictionary), so the pattern check after the run holds.

import fc from "fast-check";
import type { FuzzEnv } from "./fuzz_env.ts";
import { KEEP, LIVE, PLAY } from "./fuzz_env.ts";
import type { Target } from "./fuzz_run.ts";

export interface RestCase {
  method: string;
  path: string;
  query: string;
  contentType: string | null;
  body: string | null;
}

const TYPES = ["System", "ProtectionDomain", "StoragePool", "FaultSet", "Sds", "Device", "Sdc", "Volume", "VTree", "User", "Alert", "SpSds"];
const INSTANCE_ACTIONS = [
  "removeDevice", "setDeviceName", "removeFaultSet", "removeProtectionDomain", "setProtectionDomainName", "removeSdc", "setSdcName",
  "removeSds", "setSdsName", "removeStoragePool", "setCapacityAlertThresholds", "setRebalanceEnabled", "setRebuildEnabled",
  "setRebuildIoPriorityPolicy", "setRebalanceIoPriorityPolicy", "setSparePercentage", "setStoragePoolName", "addMappedSdc", "mapVolumeToSdc", "overwriteVolumeContent",
  "removeMappedSdc", "removeVolume", "restore", "setMappedSdcLimits", "setVolumeAccessModeLimit", "setVolumeMappingAccessMode",
  "setVolumeName", "setVolumeSize", "unmapVolumeFromSdc", "approveSdc", "checkVolumeConsistency", "queryRebuild", "snapshotVolumes",
  "querySystemLimits", "queryMdmCluster", "queryIdByKey", "querySelectedStatistics", "removeConsistencyGroupSnapshots", "nope",
];
const CHILDREN = ["Statistics", "Volume", "Sdc", "Sds", "StoragePool", "Device", "FaultSet", "VTree", "SpSds", "ProtectionDomain", "User", "x"];

/** ids a request may name: fzplay, the fuzzer's SDC, made-up ones; never fzkeep/fzlive/SDSs/the real SDC */
const mutId = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom("{play}", "{rogue}") },
  fc.constantFrom("0000000000000000", "ffffffffffffffff", "", "{play}{play}", "zz", "1".repeat(17), "-1", "%00", "..", "{play}/x"),
  fc.stringMatching(/^[0-9a-f]{16}$/),
  fc.string({ maxLength: 20 }),
);
/** ids that are only read (GET), where any real object is fine */
const readId = fc.oneof(mutId, fc.constantFrom("{pool}", "{pd}", "{keep}"));

const weird = fc.oneof(
  fc.constantFrom<unknown>(null, true, false, 0, -1, 1e308, -1e308, 2 ** 53 + 1, 0.5, "", "x".repeat(5000), "TRUE", "ReadWrite", "ReadOnly", "NoAccess", [], {}, [[[]]], "{play}", "{rogue}", "\u0000", "\ud800"),
  fc.integer(),
  fc.string({ maxLength: 40 }),
  fc.jsonValue({ maxDepth: 3 }),
);

/** valid-looking bodies per action/route; the generator then mutates one field */
const TEMPLATES: Record<string, Record<string, unknown>> = {
  addMappedSdc: { sdcId: "{rogue}", accessMode: "ReadWrite", allowMultipleMappings: "TRUE" },
  mapVolumeToSdc: { sdcId: "{rogue}", accessMode: "ReadOnly", allowMultipleMappings: "TRUE" },
  removeMappedSdc: { sdcId: "{rogue}" },
  unmapVolumeFromSdc: { sdcId: "{rogue}" },
  setVolumeMappingAccessMode: { sdcId: "{rogue}", accessMode: "ReadOnly" },
  setMappedSdcLimits: { sdcId: "{rogue}", bandwidthLimitInKbps: "1024", iopsLimit: "100" },
  setVolumeSize: { sizeInGB: "1" },
  setVolumeName: { newName: "fzplay2" },
  setVolumeAccessModeLimit: { accessModeLimit: "ReadOnly" },
  overwriteVolumeContent: { srcVolumeId: "{play}" },
  restore: { srcVolumeId: "{play}" },
  removeVolume: { removeMode: "ONLY_ME" },
  setSdcName: { sdcName: "fz-sdc" },
  removeSdc: {},
  queryIdByKey: { name: PLAY },
  querySelectedStatistics: { properties: ["numOfVolumes", "capacityInUseInKb"] },
  snapshotVolumes: { snapshotDefs: [{ volumeId: "{play}", snapshotName: "fzsnap" }] },
  approveSdc: { sdcGuid: "fuzz-sdc" },
  checkVolumeConsistency: {},
  createVolume: { storagePoolId: "{pool}", name: "fzv", volumeSizeInKb: "8388608", volumeType: "ThinProvisioned" },
  createStoragePool: { protectionDomainId: "{pd}", name: "fzsp", sparePercentage: "10" },
  createProtectionDomain: { name: "fzpd" },
  createFaultSet: { protectionDomainId: "{pd}", name: "fzfs" },
  querySystemLimits: {},
  batched: { selectedStatisticsList: [{ type: "Volume", ids: ["{play}"], properties: ["userDataReadBwc"] }] },
};

function keysOf(template: string): string[] {
  const k = Object.keys(TEMPLATES[template] ?? {});
  return k.length > 0 ? k : ["x"];
}

const bodyArb = (template: string) =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constant(JSON.stringify(TEMPLATES[template] ?? {})) },
    // one field replaced
    { weight: 5, arbitrary: fc.record({ key: fc.constantFrom(...keysOf(template)), v: weird }).map(({ key, v }) => JSON.stringify({ ...(TEMPLATES[template] ?? {}), [key]: v })) },
    // one field dropped, one added
    fc.constantFrom(...keysOf(template)).map((key) => JSON.stringify(Object.fromEntries(Object.entries(TEMPLATES[template] ?? {}).filter(([k]) => k !== key)))),
    fc.record({ key: fc.oneof(fc.constantFrom("__proto__", "constructor", "prototype", "toString", ""), fc.string({ maxLength: 10 })), v: weird }).map(({ key, v }) => {
      const base = JSON.stringify(TEMPLATES[template] ?? {});
      return `${base.slice(0, -1)}${base.length > 2 ? "," : ""}${JSON.stringify(key)}:${JSON.stringify(v) ?? "null"}}`;
    }),
    // anything
    fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? "null"),
    fc.string({ maxLength: 200 }),
    fc.constantFrom('{"a":', "{,}", "[", '{"name":"\\ud800"}', "null", "0", '""', "[]", "\u0000", "{}".repeat(10), " "),
    fc.integer({ min: 1, max: 400_000 }).map((n) => "[".repeat(n)),
    fc.integer({ min: 1, max: 50_000 }).map((n) => '{"a":'.repeat(n) + "1" + "}".repeat(n)),
    fc.constant("x".repeat(1024 * 1024 + 1)),
  );

const routeArb: fc.Arbitrary<{ method: string; path: string; template: string }> = fc.oneof(
  fc.record({ t: fc.constantFrom(...TYPES), m: fc.constantFrom("GET", "POST") }).map(({ t, m }) => ({ method: m, path: `/api/types/${t}/instances`, template: `create${t}` })),
  fc.record({ t: fc.constantFrom(...TYPES), a: fc.constantFrom("queryIdByKey", "querySelectedStatistics", "nope") }).map(({ t, a }) => ({ method: "POST", path: `/api/types/${t}/instances/action/${a}`, template: a })),
  fc.record({ t: fc.constantFrom(...TYPES), id: readId }).map(({ t, id }) => ({ method: "GET", path: `/api/instances/${t}::${id}`, template: "" })),
  fc.record({ t: fc.constantFrom(...TYPES), id: readId, c: fc.constantFrom(...CHILDREN) }).map(({ t, id, c }) => ({ method: "GET", path: `/api/instances/${t}::${id}/relationships/${c}`, template: "" })),
  { weight: 4, arbitrary: fc.record({ t: fc.constantFrom("Volume", "Volume", "Sdc", ...TYPES), id: mutId, a: fc.constantFrom(...INSTANCE_ACTIONS) }).map(({ t, id, a }) => ({ method: "POST", path: `/api/instances/${t}::${id}/action/${a}`, template: a })) },
  fc.constantFrom("querySystemLimits", "queryMdmCluster", "snapshotVolumes", "removeConsistencyGroupSnapshots", "approveSdc").map((a) => ({ method: "POST", path: `/api/instances/System/action/${a}`, template: a })),
  fc.constantFrom("/api/pf/alerts", "/api/pf/history", "/api/pf/live", "/api/version", "/api/types/Alert/instances", "/api/pf/mdmRole", "/metrics", "/dashboard/api/summary", "/dashboard/", "/dashboard/assets/app.js", "/dashboard/assets/../../x", "/api/instances/Alert::1", "/").map((p) => ({ method: "GET", path: p, template: "" })),
  fc.constant({ method: "POST", path: "/api/instances/querySelectedStatistics", template: "batched" }),
  // (no /api/login: wrong passwords would lock the admin out; /api/logout is in the segment list)
  // a path segment off
  fc.record({ segs: fc.array(fc.oneof(fc.constantFrom("api", "types", "instances", "logout", "action", "relationships", "Volume::{play}", "System", "%2e%2e", "%2F", "%00", "%zz", "", "::", "Volume::", "a".repeat(3000)), fc.string({ maxLength: 12 }).map(encodeURIComponent)), { maxLength: 7 }), m: fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD") }).map(({ segs, m }) => ({ method: m, path: `/${segs.join("/")}`, template: "" })),
);

const queryArb = fc.oneof(
  { weight: 6, arbitrary: fc.constant("") },
  fc.constantFrom("?all=true", "?all=false", "?all=1", "?all=", "?all=TRUE&all=false", "?%zz", "?seconds=-1", "?seconds=1e9", "?range=x", "?&&&", `?${"a=1&".repeat(500)}`),
  fc.array(fc.tuple(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 })), { minLength: 1, maxLength: 4 }).map((kv) => `?${kv.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&")}`),
);

const contentTypeArb = fc.oneof(
  { weight: 6, arbitrary: fc.constant<string | null>("application/json") },
  fc.constantFrom<string | null>(null, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=utf-16", "*/*", "application/json\u0000", "garbage"),
);

export const restCaseArb: fc.Arbitrary<RestCase> = routeArb.chain((r) =>
  fc.record({
    method: fc.oneof({ weight: 12, arbitrary: fc.constant(r.method) }, fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH")),
    path: fc.constant(r.path),
    query: queryArb,
    contentType: contentTypeArb,
    body: fc.oneof({ weight: 8, arbitrary: bodyArb(r.template).map((b): string | null => b) }, fc.constant<string | null>(null)),
  }),
);

function fill(env: FuzzEnv, s: string): string {
  return s
    .replaceAll("{play}", env.ids.play.id)
    .replaceAll("{rogue}", env.ids.rogueSdcId)
    .replaceAll("{pool}", env.ids.poolId)
    .replaceAll("{pd}", env.ids.pdId)
    .replaceAll("{keep}", env.ids.keep.id);
}

/** HTTP statuses the MDM answered, over the run (a fuzzer that only gets 404s tests little) */
export const restStatusCounts = new Map<number, number>();

export class RestSession {
  token = "";
  relogins = 0;
  constructor(private readonly env: FuzzEnv) {}
  async login(): Promise<void> {
    const r = await fetch(`${this.env.cluster.mdmUrl}/api/login`, { headers: { authorization: `Basic ${btoa("admin:test-admin-pw")}` }, tls: { ca: this.env.caPem } });
    if (r.status !== 200) throw new Error(`admin login failed: ${r.status} ${await r.text()}`);
    this.token = (await r.json()) as string;
    this.relogins++;
  }
}

export function restTarget(env: FuzzEnv, session: RestSession, o: { timeoutMs?: number } = {}): Target<RestCase> {
  const timeoutMs = o.timeoutMs ?? 15_000;
  const send = async (c: RestCase): Promise<Response | string> => {
    const headers: Record<string, string> = { authorization: `Basic ${btoa(`admin:${session.token}`)}` };
    if (c.contentType !== null) headers["content-type"] = c.contentType;
    const withBody = c.body !== null && c.method !== "GET" && c.method !== "HEAD";
    try {
      return await fetch(`${env.cluster.mdmUrl}${fill(env, c.path)}${fill(env, c.query)}`, {
        method: c.method,
        headers,
        body: withBody ? fill(env, c.body!) : undefined,
        tls: { ca: env.caPem },
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (e) {
      const err = e as Error;
      if (err.name === "TimeoutError") return `hang: ${c.method} ${c.path}: no answer within ${timeoutMs} ms`;
      // fetch refuses some URLs itself (not the server's doing)
      if (err instanceof TypeError && /url|invalid/i.test(err.message)) return "";
      return `crash: ${c.method} ${c.path}: ${err.name}: ${err.message}`;
    }
  };
  return {
    name: "rest",
    arb: restCaseArb,
    toJson: (c) => ({ ...c, body: c.body !== null && c.body.length > 4096 ? { repeat: c.body[0], times: c.body.length, json: c.body.slice(0, 64) } : c.body }),
    async exec(c) {
      let r = await send(c);
      if (typeof r === "string") return r;
      if (r.status === 401 && !c.path.includes("login")) {
        // the case logged our token out (or the path ends one): log in again and retry once
        await r.arrayBuffer();
        await session.login();
        r = await send(c);
        if (typeof r === "string") return r;
      }
      const text = await r.text();
      restStatusCounts.set(r.status, (restStatusCounts.get(r.status) ?? 0) + 1);
      if (r.status >= 500) {
        let code: unknown;
        try {
          code = (JSON.parse(text) as { pfCode?: unknown }).pfCode;
        } catch {
          return `internal: ${c.method} ${c.path}: HTTP ${r.status} with a body that is not JSON: ${text.slice(0, 200)}`;
        }
        if (code === "INTERNAL" || code === undefined) return `internal: ${c.method} ${c.path}: HTTP ${r.status}: ${text.slice(0, 300)}`;
      }
      return "";
    },
  };
}

/** Remove what REST cases created (volumes other than the three of the run), so that 100k cases do not fill the pool. */
export async function cleanupRest(env: FuzzEnv, session: RestSession): Promise<void> {
  const h = { authorization: `Basic ${btoa(`admin:${session.token}`)}`, "content-type": "application/json" };
  const r = await fetch(`${env.cluster.mdmUrl}/api/types/Volume/instances`, { headers: h, tls: { ca: env.caPem } });
  if (r.status === 401) return session.login();
  const vols = (await r.json()) as { id: string; name: string | null }[];
  for (const v of vols) {
    if (v.name === KEEP || v.name === LIVE || v.name === PLAY || v.id === env.ids.play.id) continue;
    await fetch(`${env.cluster.mdmUrl}/api/instances/Volume::${v.id}/action/removeMappedSdc`, { method: "POST", headers: h, body: JSON.stringify({ allSdcs: "" }), tls: { ca: env.caPem } }).then((x) => x.arrayBuffer());
    await fetch(`${env.cluster.mdmUrl}/api/instances/Volume::${v.id}/action/removeVolume`, { method: "POST", headers: h, body: JSON.stringify({ removeMode: "INCLUDING_DESCENDANTS" }), tls: { ca: env.caPem } }).then((x) => x.arrayBuffer());
  }
}
