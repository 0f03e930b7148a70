// The cluster YAML (`pf up cluster.yaml`): one file copied to every host; each host starts the
// roles addressed to it. The zod schema below is the one source of its type. Parsing keeps the
// YAML source positions so that an error names both the field path and the line.
//
// Invariants checked here (not only by the MDM later): names are unique where they must be,
// every SDS names a pool that the file defines, every mapping names an SDC host that exists,
// exactly one host runs the MDM — or, with mdm.etcd (HA mode: the MDMs share their metadata in
// etcd and take turns being active), any number of hosts do, and the file then gives the
// cluster secret and admin password every MDM host must share; no two roles of one host listen
// on one port, no two devices of one host share a path, and a device given a size holds at
// least one extent of its SDS's pool.

import { LineCounter, parseDocument, isNode, type Document } from "yaml";
import { z } from "zod";
import { PfError } from "./errors.ts";
import { IoPriorityPolicy } from "./cluster_api.ts";
import { Limits } from "./limits.ts";
import { formatBytes, parseDurationMs, parseHostPort, parseSizeBytes } from "./sizes.ts";

const objName = z.string().min(1).max(31).regex(/^[A-Za-z0-9_.:\-]+$/, "names use letters, digits, _ . : -");
const size = z
  .union([z.string(), z.number()])
  .transform((v, ctx) => {
    const b = parseSizeBytes(v);
    if (b === null) {
      ctx.addIssue({ code: "custom", message: `not a size: ${JSON.stringify(v)} (use e.g. 1GiB, 512MiB)` });
      return z.NEVER;
    }
    return b;
  });
/** a copy bandwidth per device (bytes per second): a size, at most Limits.maxCopyBwKbps KB/s */
const copyRate = size.refine((b) => b <= Limits.maxCopyBwKbps * 1024, `a copy rate limit is at most ${Limits.maxCopyBwKbps} KiB/s per device (0: none)`);
const duration = z
  .union([z.string(), z.number()])
  .transform((v, ctx) => {
    const ms = parseDurationMs(v);
    if (ms === null) {
      ctx.addIssue({ code: "custom", message: `not a duration: ${JSON.stringify(v)} (use e.g. 5s, 500ms, 2m)` });
      return z.NEVER;
    }
    return ms;
  });
const hostPort = (defaultPort: number) =>
  z.string().transform((v, ctx) => {
    const hp = parseHostPort(v, defaultPort);
    if (hp === null) {
      ctx.addIssue({ code: "custom", message: `not HOST:PORT: ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return hp;
  });

export const DEFAULT_MDM_PORT = 6611;
export const DEFAULT_SDS_PORT = 7072;
export const DEFAULT_NBD_PORT = 10809;
/** control HTTP ports (/health /metrics /status): by default the role's own port + 1000 */
export const DEFAULT_SDS_CONTROL_PORT = DEFAULT_SDS_PORT + 1000;
export const DEFAULT_SDC_CONTROL_PORT = DEFAULT_NBD_PORT + 1000;
export const DEFAULT_ETCD_CLIENT_PORT = 2379;
export const DEFAULT_ETCD_PEER_PORT = 2380;

const SdsConfig = z.strictObject({
  name: objName,
  port: z.number().int().min(0).max(65535).default(DEFAULT_SDS_PORT),
  pool: z.string().regex(/^[^/]+\/[^/]+$/, "pool is PD/POOL, e.g. pd1/sp1"),
  faultSet: objName.optional(),
  /** control HTTP port on the host's address (default: port + 1000; 0 = any free port) */
  controlPort: z.number().int().min(0).max(65535).optional(),
  devices: z
    .array(z.strictObject({ path: z.string().min(1), size: size.optional() }))
    .min(1, "an SDS needs at least one device")
    .max(64),
});

const HostConfig = z.strictObject({
  name: objName,
  address: z.string().min(1), // data-plane and REST address of this host
  mdm: z.boolean().default(false),
  /** with mdm.etcd.embedded: run an etcd member here (default: where mdm is true); a member on a
   *  host without an MDM is PowerFlex's tie-breaker (it votes, holds no metadata of ours) */
  etcd: z.boolean().optional(),
  sds: z.array(SdsConfig).default([]),
  sdc: z
    .strictObject({
      name: objName.optional(),
      nbd: hostPort(DEFAULT_NBD_PORT).default({ host: "127.0.0.1", port: DEFAULT_NBD_PORT }),
      /** control HTTP port (default: the NBD host, NBD port + 1000) */
      control: hostPort(DEFAULT_SDC_CONTROL_PORT).optional(),
      /** NBD over TLS (pf sdc --nbd-tls): off, on or require; absent = off (with a warning beyond loopback) */
      nbdTls: z.enum(["off", "on", "require"]).optional(),
      /** certificate directory (pf sdc --nbd-tls-dir); default DATA_DIR/sdc/nbd-tls */
      nbdTlsDir: z.string().min(1).optional(),
      /** clients must present a certificate signed by the directory's ca-cert.pem */
      nbdTlsVerifyPeer: z.boolean().optional(),
    })
    .optional(),
});

const PoolConfig = z.strictObject({
  name: objName,
  sparePercentage: z.number().int().min(0).max(90).default(10),
  extentSize: size.optional(),
  granularity: size.optional(),
  /** rebuild (and resync) copy bandwidth per device, bytes per second (0 = none; at creation 0 also makes the policy unlimited) */
  rebuildRateLimit: copyRate.optional(),
  /** I/O priority of the pool's copies (src/sds/copy_throttle.ts). Given: pf up sets it on every
   *  start (also on an existing pool, with rebuildRateLimit); left out: the pool keeps what it has
   *  (new pools: rebuild limitNumOfConcurrentIos 1, rebalance favorAppIos 1 at 10 MiB/s). */
  rebuildIoPriorityPolicy: IoPriorityPolicy.optional(),
  rebuildConcurrentIos: z.number().int().min(1).max(Limits.maxCopyIosPerDevice).optional(),
  rebalanceIoPriorityPolicy: IoPriorityPolicy.optional(),
  rebalanceConcurrentIos: z.number().int().min(1).max(Limits.maxCopyIosPerDevice).optional(),
  /** rebalance (drain, rebalance moves) bandwidth per device, bytes per second (0 = none) */
  rebalanceRateLimit: copyRate.optional(),
  /** writeBack (default): acked when both copies hold the write, FLUSH/FUA make it durable;
   *  writeThrough: every write durable on both copies before its ack. Given: pf up sets it on
   *  every start (also on an existing pool); left out: the pool keeps what it has. */
  writeCache: z.enum(["writeBack", "writeThrough"]).optional(),
}).superRefine((p, ctx) => {
  // the MDM refuses these (io_priority.ts); said here, before pf up creates the pool
  if (p.rebuildIoPriorityPolicy === "dynamicBwThrottling" && p.rebuildRateLimit === 0) {
    ctx.addIssue({ code: "custom", path: ["rebuildRateLimit"], message: "rebuildIoPriorityPolicy dynamicBwThrottling needs a rebuildRateLimit above 0 (it is a cap that backs off)" });
  }
  if (p.rebalanceIoPriorityPolicy === "dynamicBwThrottling" && p.rebalanceRateLimit === 0) {
    ctx.addIssue({ code: "custom", path: ["rebalanceRateLimit"], message: "rebalanceIoPriorityPolicy dynamicBwThrottling needs a rebalanceRateLimit above 0 (it is a cap that backs off)" });
  }
});

const ProtectionDomainConfig = z.strictObject({
  name: objName,
  faultSets: z.array(objName).default([]),
  storagePools: z.array(PoolConfig).min(1),
});

const VolumeConfig = z.strictObject({
  name: objName,
  pool: z.string().regex(/^[^/]+\/[^/]+$/, "pool is PD/POOL, e.g. pd1/sp1"),
  size,
  type: z.enum(["thin", "thick"]).default("thin"),
  mapTo: z
    .array(z.strictObject({ host: objName, accessMode: z.enum(["ReadWrite", "ReadOnly"]).default("ReadWrite") }))
    .default([]),
});

export const ClusterConfig = z
  .strictObject({
    cluster: z
      .strictObject({
        name: objName.default("pf"),
        secret: z.string().min(16, "the cluster secret needs at least 16 characters").optional(),
        adminPassword: z.string().min(8).optional(),
      })
      .default({ name: "pf" }),
    mdm: z
      .strictObject({
        port: z.number().int().min(0).max(65535).default(DEFAULT_MDM_PORT),
        plainHttp: z.boolean().default(false),
        tlsCert: z.string().optional(), // PEM files; generated in the MDM data dir when absent
        tlsKey: z.string().optional(),
        ca: z.string().optional(), // certificate other hosts use to verify the MDM
        // failure detection and recovery (durations such as "5s", "500ms"; ms when a number)
        heartbeatTimeout: duration.optional(), // an SDS/SDC silent this long is down (default 5s)
        rebuildGrace: duration.optional(), // a lost SDS back within this resyncs (default 30s)
        stallTimeout: duration.optional(), // recovery with no progress this long raises an alert (default 30s)
        alerts: z
          .strictObject({
            // every alert raised and cleared is POSTed here as JSON (pf mdm --alert-webhook)
            webhook: z.url({ protocol: /^https?$/, message: "webhook must be an http:// or https:// URL" }).optional(),
          })
          .optional(),
        // HA mode: every host with mdm: true runs an MDM; they share the metadata in etcd
        etcd: z
          .strictObject({
            // etcd client URLs the MDMs use (default with embedded: every member's client URL)
            endpoints: z.array(z.string().min(1)).min(1, "give at least one etcd client URL (http://HOST:2379)").optional(),
            clusterName: objName.optional(), // keys under /pf/<clusterName>/ (default: cluster.name)
            // pf up starts an etcd member on each etcd host (DATA_DIR/etcd), supervised as a role
            embedded: z.boolean().optional(),
            clientPort: z.number().int().min(1).max(65535).optional(), // default 2379
            peerPort: z.number().int().min(1).max(65535).optional(), // default 2380
            bin: z.string().min(1).optional(), // the etcd binary (default: etcd on PATH)
            // tests only: etcd skips fsync (a power cut can lose or corrupt its data)
            unsafeNoFsync: z.boolean().optional(),
            // TLS to an external etcd (https:// endpoints): the CA of the members' server
            // certificates (etcdctl --cacert), and a client certificate + key for etcd's
            // --client-cert-auth (its subject without a CN: etcd's JSON gateway refuses a CN)
            cacert: z.string().min(1).optional(),
            cert: z.string().min(1).optional(),
            key: z.string().min(1).optional(),
            // etcd auth (etcdctl auth enable): a user whose role has readwrite on /pf/<clusterName>/
            user: z.string().min(1).optional(),
            password: z.string().min(1).optional(), // or PF_ETCD_PASSWORD in pf up's environment
            // embedded etcd over TLS: each etcd host's member certificate and key for its own
            // address (the same path on every host; serverAuth + clientAuth, signed by cacert):
            // clients and peers then speak https, and with cert/key the members demand a client
            // certificate (--client-cert-auth, --peer-client-cert-auth)
            memberCert: z.string().min(1).optional(),
            memberKey: z.string().min(1).optional(),
            // embedded etcd without memberCert: auto (default) = pf up secures the members itself
            // (https, client and peer certificate auth) with a CA derived from cluster.secret;
            // off = plain http without authentication (a private network you trust only)
            tls: z.enum(["auto", "off"]).optional(),
          })
          .optional(),
      })
      .default({ port: DEFAULT_MDM_PORT, plainHttp: false }),
    /** the data plane (SDC->SDS, SDS->SDS, MDM->SDS): tls: every connection in TLS (pf mdm|sds|sdc --data-plane-tls) */
    dataPlane: z.strictObject({ tls: z.boolean().default(false) }).default({ tls: false }),
    hosts: z.array(HostConfig).min(1),
    protectionDomains: z.array(ProtectionDomainConfig).default([]),
    volumes: z.array(VolumeConfig).default([]),
  })
  .superRefine((c, ctx) => {
    const mdmHosts = c.hosts.filter((h) => h.mdm);
    if (c.mdm.etcd === undefined && mdmHosts.length !== 1) {
      ctx.addIssue({ code: "custom", path: ["hosts"], message: `exactly one host must have mdm: true (found ${mdmHosts.length}); several MDMs need mdm.etcd` });
    }
    const etcd = c.mdm.etcd;
    if (etcd !== undefined && etcd.embedded !== true && etcd.endpoints === undefined) {
      ctx.addIssue({ code: "custom", path: ["mdm", "etcd", "endpoints"], message: "give the etcd client URLs (endpoints: [http://HOST:2379, …]), or embedded: true to let pf up run etcd on the MDM hosts" });
    }
    c.hosts.forEach((h, hi) => {
      if (h.etcd !== undefined && etcd?.embedded !== true) ctx.addIssue({ code: "custom", path: ["hosts", hi, "etcd"], message: "hosts[].etcd needs mdm.etcd.embedded: true" });
    });
    if (etcd?.embedded === true) {
      const n = c.hosts.filter((h) => h.etcd ?? h.mdm).length;
      if (n % 2 === 0) ctx.addIssue({ code: "custom", path: ["mdm", "etcd", "embedded"], message: `embedded etcd needs an odd number of members (1, 3 or 5), found ${n}: add etcd: true to a host without an MDM (a tie-breaker) or etcd: false to one MDM host` });
      if (etcd.clientPort !== undefined && etcd.clientPort === etcd.peerPort) ctx.addIssue({ code: "custom", path: ["mdm", "etcd", "peerPort"], message: "the etcd peer port must differ from its client port" });
    }
    if (etcd !== undefined) {
      const tls = etcd.cacert !== undefined || etcd.cert !== undefined;
      if ((etcd.cert === undefined) !== (etcd.key === undefined)) ctx.addIssue({ code: "custom", path: ["mdm", "etcd", etcd.cert === undefined ? "cert" : "key"], message: "an etcd client certificate needs both cert and key" });
      if (etcd.password !== undefined && etcd.user === undefined) ctx.addIssue({ code: "custom", path: ["mdm", "etcd", "user"], message: "an etcd password needs its user" });
      const member = etcd.memberCert !== undefined || etcd.memberKey !== undefined;
      if ((etcd.memberCert === undefined) !== (etcd.memberKey === undefined)) ctx.addIssue({ code: "custom", path: ["mdm", "etcd", etcd.memberCert === undefined ? "memberCert" : "memberKey"], message: "an embedded etcd member's certificate needs both memberCert and memberKey" });
      if (member && etcd.embedded !== true) ctx.addIssue({ code: "custom", path: ["mdm", "etcd", "memberCert"], message: "memberCert/memberKey are for pf up's embedded etcd (embedded: true); an external etcd has its own certificates" });
      if (member && etcd.cacert === undefined) ctx.addIssue({ code: "custom", path: ["mdm", "etcd", "cacert"], message: "an embedded etcd over TLS needs cacert: the CA that signed every memberCert (the MDMs and the peers verify with it)" });
      if (tls && etcd.embedded === true && !member) ctx.addIssue({ code: "custom", path: ["mdm", "etcd", etcd.cacert !== undefined ? "cacert" : "cert"], message: "pf up makes the embedded etcd's certificates itself (mdm.etcd.tls: auto, from cluster.secret): drop cacert/cert/key, or give memberCert and memberKey too to use your own" });
      if (etcd.tls !== undefined && etcd.embedded !== true) ctx.addIssue({ code: "custom", path: ["mdm", "etcd", "tls"], message: "mdm.etcd.tls is for pf up's embedded etcd (embedded: true); an external etcd is secured by its own flags (give cacert, cert, key)" });
      if (etcd.tls === "off" && member) ctx.addIssue({ code: "custom", path: ["mdm", "etcd", "tls"], message: "tls: off with memberCert/memberKey: drop tls: off to serve TLS with your certificates, or drop memberCert/memberKey for plain http" });
      const plain = (etcd.endpoints ?? []).filter((e) => !e.startsWith("https://"));
      if (tls && plain.length > 0) ctx.addIssue({ code: "custom", path: ["mdm", "etcd", "endpoints"], message: `with etcd TLS (cacert, cert) every endpoint must be https://; ${plain.join(", ")} is not` });
    }
    if (c.mdm.etcd !== undefined) {
      if (mdmHosts.length === 0) ctx.addIssue({ code: "custom", path: ["hosts"], message: "with mdm.etcd, at least one host must have mdm: true" });
      if (c.cluster.secret === undefined) ctx.addIssue({ code: "custom", path: ["cluster", "secret"], message: "with mdm.etcd (several MDM hosts), the file must give the cluster secret every host shares" });
      if (c.cluster.adminPassword === undefined) ctx.addIssue({ code: "custom", path: ["cluster", "adminPassword"], message: "with mdm.etcd (several MDM hosts), the file must give the admin password" });
    }
    unique(ctx, c.hosts.map((h) => h.name), ["hosts"], "host name");
    const sdsNames = c.hosts.flatMap((h) => h.sds.map((s) => s.name));
    unique(ctx, sdsNames, ["hosts"], "SDS name");
    unique(ctx, c.volumes.map((v) => v.name), ["volumes"], "volume name");
    const pools = new Set(c.protectionDomains.flatMap((pd) => pd.storagePools.map((p) => `${pd.name}/${p.name}`)));
    const faultSets = new Set(c.protectionDomains.flatMap((pd) => pd.faultSets));
    c.hosts.forEach((h, hi) =>
      h.sds.forEach((s, si) => {
        if (!pools.has(s.pool)) ctx.addIssue({ code: "custom", path: ["hosts", hi, "sds", si, "pool"], message: `pool ${s.pool} is not defined under protectionDomains` });
        if (s.faultSet !== undefined && !faultSets.has(s.faultSet)) {
          ctx.addIssue({ code: "custom", path: ["hosts", hi, "sds", si, "faultSet"], message: `fault set ${s.faultSet} is not defined` });
        }
        const extentBytes = poolExtentBytes(c, s.pool);
        s.devices.forEach((d, di) => {
          if (d.size !== undefined && d.size < extentBytes) {
            ctx.addIssue({
              code: "custom",
              path: ["hosts", hi, "sds", si, "devices", di, "size"],
              message: `${formatBytes(d.size)} is smaller than one extent of pool ${s.pool} (${formatBytes(extentBytes)}), the smallest device that can hold a copy`,
            });
          }
        });
      }),
    );
    c.hosts.forEach((h, hi) => uniquePorts(ctx, h, hi, c.mdm.port));
    c.hosts.forEach((h, hi) => {
      const paths = new Map<string, string>();
      h.sds.forEach((s, si) =>
        s.devices.forEach((d, di) => {
          const other = paths.get(d.path);
          if (other !== undefined) {
            ctx.addIssue({ code: "custom", path: ["hosts", hi, "sds", si, "devices", di, "path"], message: `device ${d.path} is already used by ${other}; two devices never share a file` });
          } else paths.set(d.path, `SDS ${s.name}`);
        }),
      );
    });
    const sdcHosts = new Set(c.hosts.filter((h) => h.sdc !== undefined).map((h) => h.name));
    c.volumes.forEach((v, vi) => {
      if (!pools.has(v.pool)) ctx.addIssue({ code: "custom", path: ["volumes", vi, "pool"], message: `pool ${v.pool} is not defined under protectionDomains` });
      v.mapTo.forEach((m, mi) => {
        if (!sdcHosts.has(m.host)) ctx.addIssue({ code: "custom", path: ["volumes", vi, "mapTo", mi, "host"], message: `host ${m.host} has no sdc` });
      });
    });
  });
export type ClusterConfig = z.infer<typeof ClusterConfig>;
export type HostConfig = z.infer<typeof HostConfig>;
export type SdsConfig = z.infer<typeof SdsConfig>;

/** Extent size of pool "PD/POOL" as the MDM will make it (the pool's extentSize, else the default). */
/** Hosts that run an embedded etcd member (mdm.etcd.embedded), in file order. */
export function embeddedEtcdHosts(c: ClusterConfig): ClusterConfig["hosts"] {
  return c.mdm.etcd?.embedded === true ? c.hosts.filter((h) => h.etcd ?? h.mdm) : [];
}

function urlHost(addr: string): string {
  return addr.includes(":") ? `[${addr}]` : addr;
}

/**
 * How pf up secures its embedded etcd: "given" (the operator's memberCert/memberKey/cacert),
 * "auto" (certificates pf up derives from cluster.secret: up_etcd_tls.ts), "off" (plain http),
 * or null when pf up runs no etcd.
 */
export function embeddedEtcdTls(c: ClusterConfig): "given" | "auto" | "off" | null {
  const e = c.mdm.etcd;
  if (e?.embedded !== true) return null;
  if (e.memberCert !== undefined) return "given";
  return e.tls ?? "auto";
}

/** An embedded member's client and peer URLs. */
export function etcdMemberUrls(c: ClusterConfig, host: { address: string }): { clientUrl: string; peerUrl: string } {
  const e = c.mdm.etcd;
  const tls = embeddedEtcdTls(c);
  const scheme = tls === "given" || tls === "auto" ? "https" : "http";
  return {
    clientUrl: `${scheme}://${urlHost(host.address)}:${e?.clientPort ?? DEFAULT_ETCD_CLIENT_PORT}`,
    peerUrl: `${scheme}://${urlHost(host.address)}:${e?.peerPort ?? DEFAULT_ETCD_PEER_PORT}`,
  };
}

/** The etcd endpoints the MDMs use: the file's list, else every embedded member's client URL. */
export function etcdEndpointsOf(c: ClusterConfig): string[] {
  return c.mdm.etcd?.endpoints ?? embeddedEtcdHosts(c).map((h) => etcdMemberUrls(c, h).clientUrl);
}

export function poolExtentBytes(c: { protectionDomains: { name: string; storagePools: { name: string; extentSize?: number }[] }[] }, pool: string): number {
  const [pdName, poolName] = pool.split("/");
  const p = c.protectionDomains.find((pd) => pd.name === pdName)?.storagePools.find((x) => x.name === poolName);
  return p?.extentSize ?? Limits.defaultExtentBytes;
}

/** No two roles of one host listen on one address and port (0, "any free port", never clashes). */
function uniquePorts(ctx: z.RefinementCtx, h: { address: string; mdm: boolean; sds: { name: string; port: number }[]; sdc?: { nbd: { host: string; port: number } } }, hi: number, mdmPort: number): void {
  const taken = new Map<string, string>();
  const claim = (host: string, port: number, who: string, path: (string | number)[]) => {
    if (port === 0) return;
    const key = `${host}:${port}`;
    const other = taken.get(key);
    if (other !== undefined) ctx.addIssue({ code: "custom", path, message: `port ${port} is already used by ${other} on host ${h.address}` });
    else taken.set(key, who);
  };
  if (h.mdm) claim(h.address, mdmPort, "the MDM (mdm.port)", ["hosts", hi, "mdm"]);
  h.sds.forEach((s, si) => claim(h.address, s.port, `SDS ${s.name}`, ["hosts", hi, "sds", si, "port"]));
  if (h.sdc) {
    const nbdHost = h.sdc.nbd.host === "0.0.0.0" || h.sdc.nbd.host === "::" ? h.address : h.sdc.nbd.host;
    claim(nbdHost, h.sdc.nbd.port, "the SDC's NBD server", ["hosts", hi, "sdc", "nbd"]);
  }
}

function unique(ctx: z.RefinementCtx, names: string[], path: (string | number)[], what: string): void {
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) ctx.addIssue({ code: "custom", path, message: `duplicate ${what} ${JSON.stringify(n)}` });
    seen.add(n);
  }
}

/** Parse and validate YAML text; errors name the file, line, field path and the rule. */
export function parseClusterConfig(text: string, fileName: string): ClusterConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const pos = lineCounter.linePos(e.pos[0]);
    throw new PfError("BAD_REQUEST", `${fileName}:${pos.line}:${pos.col}: YAML syntax error: ${e.message.split("\n")[0]}`);
  }
  const parsed = ClusterConfig.safeParse(documentValue(doc, fileName));
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const path = issue.path.filter((p): p is string | number => typeof p !== "symbol");
  const line = lineOf(doc, lineCounter, path);
  const where = path.length > 0 ? path.join(".") : "(top level)";
  throw new PfError("BAD_REQUEST", `${fileName}:${line}: ${where}: ${issue.message}`);
}

/**
 * The document as plain values. The yaml library throws a ReferenceError for an alias whose
 * anchor comes later or not at all, and for an alias bomb (more than its maxAliasCount
 * expansions): a bad file, not a bug (found by bench/fuzz.ts --target yaml).
 */
function documentValue(doc: Document, fileName: string): unknown {
  try {
    return doc.toJS();
  } catch (e) {
    if (e instanceof ReferenceError) throw new PfError("BAD_REQUEST", `${fileName}: YAML alias error: ${e.message}`);
    throw e;
  }
}

/** Line of the deepest node on `path` that exists in the document. */
function lineOf(doc: Document, lc: LineCounter, path: (string | number)[]): number {
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
    if (isNode(node) && node.range) return lc.linePos(node.range[0]).line;
  }
  return 1;
}
