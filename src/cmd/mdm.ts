// `pf mdm`: the metadata manager (topology, placement, health, recovery, REST API). The recovery
// timeouts (--heartbeat-timeout-ms, --rebuild-grace-ms, --stall-timeout-ms) default to Limits;
// --alert-webhook URL posts every alert raised and cleared.

import { defineCommand } from "citty";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { runMdm, type MdmHaOptions } from "../mdm/main.ts";
import type { EtcdSecurity } from "../store/etcd_client.ts";
import { PfError } from "../proto/errors.ts";
import { parseHostPort } from "../proto/sizes.ts";
import { Limits } from "../proto/limits.ts";
import { DEFAULT_MDM_PORT } from "../proto/cluster_config.ts";
import { clusterSecretFrom, readSecretFile, serveUntilSignal } from "./role_options.ts";
import { preflightMdm } from "./role_preflight.ts";
import { PF_VERSION } from "./version.ts";

/** A whole number of milliseconds from a flag (undefined when absent). */
function msFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined || value === "") return undefined;
  if (!/^\d+$/.test(value.trim())) throw new PfError("BAD_REQUEST", `${flag} ${value} is not a whole number of milliseconds`);
  return Number(value.trim());
}

interface EtcdAccessFlags {
  cacert?: string;
  cert?: string;
  key?: string;
  user?: string;
  passwordFile?: string;
}

function haOptions(endpoints: string | undefined, cluster: string, name: string | undefined, access: EtcdAccessFlags): MdmHaOptions | undefined {
  const list = (endpoints ?? "").split(",").map((e) => e.trim()).filter((e) => e.length > 0);
  const asked = Object.entries(access).filter(([, v]) => v !== undefined && v !== "");
  if (list.length === 0) {
    if (asked.length > 0) throw new PfError("BAD_REQUEST", `--etcd-${asked[0]![0] === "passwordFile" ? "password-file" : asked[0]![0]} needs --etcd-endpoints (HA mode)`);
    return undefined;
  }
  if (!/^[A-Za-z0-9_.:-]{1,63}$/.test(cluster)) throw new PfError("BAD_REQUEST", `--cluster-name ${cluster}: use letters, digits, _ . : - (at most 63)`);
  const mdmName = name ?? hostname().replace(/[^A-Za-z0-9_.:-]/g, "-").slice(0, 31);
  return { etcdEndpoints: list, cluster, name: mdmName, etcdSecurity: etcdSecurityOf(access) };
}

/** TLS files and auth for etcd, read at the edge (a missing file is named with its flag). */
function etcdSecurityOf(a: EtcdAccessFlags): EtcdSecurity | undefined {
  if ((a.cert === undefined) !== (a.key === undefined)) throw new PfError("BAD_REQUEST", "--etcd-cert and --etcd-key go together (the client certificate and its key)");
  const password = a.passwordFile ? readSecretFile(a.passwordFile, "the etcd password") : process.env.PF_ETCD_PASSWORD || undefined;
  if (a.user !== undefined && password === undefined) throw new PfError("BAD_REQUEST", `--etcd-user ${a.user} needs its password: --etcd-password-file FILE or PF_ETCD_PASSWORD`);
  if (a.user === undefined && a.passwordFile !== undefined) throw new PfError("BAD_REQUEST", "--etcd-password-file needs --etcd-user");
  const s: EtcdSecurity = {
    ...(a.cacert ? { caPem: readPem(a.cacert, "--etcd-cacert") } : {}),
    ...(a.cert && a.key ? { certPem: readPem(a.cert, "--etcd-cert"), keyPem: readPem(a.key, "--etcd-key") } : {}),
    ...(a.user !== undefined && password !== undefined ? { user: a.user, password } : {}),
  };
  return Object.keys(s).length > 0 ? s : undefined;
}

function readPem(file: string, flag: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new PfError("NOT_FOUND", `${flag} ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); give a readable PEM file`);
  }
  if (!text.includes("-----BEGIN ")) throw new PfError("BAD_REQUEST", `${flag} ${file} is not a PEM file (no -----BEGIN line)`);
  return text;
}

export const mdmCommand = defineCommand({
  meta: { name: "mdm", description: "Run the metadata manager (REST API on HTTPS, default port 6611)" },
  args: {
    "data-dir": { type: "string", description: "Directory for the MDM database, certificate and secrets", required: true },
    listen: { type: "string", description: `HOST:PORT to serve on (default 127.0.0.1:${DEFAULT_MDM_PORT})`, default: `127.0.0.1:${DEFAULT_MDM_PORT}` },
    "cluster-secret-file": { type: "string", description: "File holding the cluster secret (or PF_CLUSTER_SECRET; generated when absent)" },
    "admin-password-file": { type: "string", description: "File holding the admin password (or PF_ADMIN_PASSWORD; generated when absent)" },
    "tls-cert": { type: "string", description: "PEM certificate to serve (default: self-signed, made in the data dir)" },
    "tls-key": { type: "string", description: "PEM private key for --tls-cert" },
    "plain-http": { type: "boolean", description: "Serve plain HTTP (only allowed on a loopback address)", default: false },
    "data-plane-tls": { type: "boolean", description: "TLS on every data-plane connection (SDC->SDS, SDS->SDS, MDM->SDS); nodes get certificates of the MDM's data-plane CA at join", default: false },
    "heartbeat-timeout-ms": { type: "string", description: `An SDS/SDC silent this long is Disconnected and its copies degrade (default ${Limits.heartbeatTimeoutMs}; the SDS lease is 0.8 x this)` },
    "rebuild-grace-ms": { type: "string", description: `A lost SDS back within this resyncs; later its copies are rebuilt elsewhere (default ${Limits.rebuildGraceMs})` },
    "stall-timeout-ms": { type: "string", description: `Recovery work with no progress this long raises an alert (default ${Limits.rebuildStallTimeoutMs})` },
    "alert-webhook": { type: "string", description: "POST every alert raised and cleared to this http(s) URL as JSON (retried with backoff)" },
    "etcd-endpoints": { type: "string", description: "HA mode: etcd client URLs, comma-separated (or PF_ETCD_ENDPOINTS); several MDMs share the metadata there" },
    "cluster-name": { type: "string", description: "HA mode: the cluster's name; its keys live under /pf/NAME/ in etcd", default: "pf" },
    name: { type: "string", description: "HA mode: this MDM's name in the cluster (default: the host name)" },
    "etcd-cacert": { type: "string", description: "HA mode: PEM CA file that verifies the etcd members (https:// endpoints)" },
    "etcd-cert": { type: "string", description: "HA mode: PEM client certificate for etcd --client-cert-auth (a subject without CN)" },
    "etcd-key": { type: "string", description: "HA mode: PEM key of --etcd-cert" },
    "etcd-user": { type: "string", description: "HA mode: etcd auth user (its role needs readwrite on /pf/NAME/)" },
    "etcd-password-file": { type: "string", description: "HA mode: file holding the etcd user's password (or PF_ETCD_PASSWORD)" },
  },
  async run({ args }) {
    const hp = parseHostPort(args.listen, DEFAULT_MDM_PORT);
    if (!hp) throw new PfError("BAD_REQUEST", `--listen ${args.listen} is not HOST:PORT`);
    const adminPassword = args["admin-password-file"]
      ? readSecretFile(args["admin-password-file"], "the admin password")
      : process.env.PF_ADMIN_PASSWORD;
    await preflightMdm({ dataDir: args["data-dir"], host: hp.host, port: hp.port, tlsCert: args["tls-cert"], tlsKey: args["tls-key"] });
    await serveUntilSignal("mdm", () =>
      runMdm({
        dataDir: args["data-dir"],
        listenHost: hp.host,
        listenPort: hp.port,
        clusterSecret: clusterSecretFrom(args["cluster-secret-file"], false),
        adminPassword: adminPassword || undefined,
        tlsCertFile: args["tls-cert"],
        tlsKeyFile: args["tls-key"],
        plainHttp: args["plain-http"],
        dataPlaneTls: args["data-plane-tls"],
        heartbeatTimeoutMs: msFlag(args["heartbeat-timeout-ms"], "--heartbeat-timeout-ms"),
        rebuildGraceMs: msFlag(args["rebuild-grace-ms"], "--rebuild-grace-ms"),
        stallTimeoutMs: msFlag(args["stall-timeout-ms"], "--stall-timeout-ms"),
        alertWebhookUrl: args["alert-webhook"] || undefined,
        version: PF_VERSION,
        ha: haOptions(args["etcd-endpoints"] ?? process.env.PF_ETCD_ENDPOINTS, args["cluster-name"], args.name, {
          cacert: args["etcd-cacert"],
          cert: args["etcd-cert"],
          key: args["etcd-key"],
          user: args["etcd-user"],
          passwordFile: args["etcd-password-file"],
        }),
      }),
    );
  },
});
