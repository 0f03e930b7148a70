// `pf up [cluster.yaml]`: start every role the cluster file gives this host, each as its own
// child process (the same binary re-executed with the role's subcommand, so that a kill -9 of
// one role is a real server failure), then create what the file lists (protection domains,
// fault sets, pools, volumes, mappings) through the MDM's REST API. Idempotent: a restart with
// the same data dir reuses every object and keeps the data. With no file, the embedded
// configs/one-host.yaml: a complete one-host cluster under ./pf-data.
// HA mode (mdm.etcd in the file): every host with mdm: true runs an MDM on etcd; every role is
// given the list of all MDM URLs (it follows the active one); the first MDM host of the file
// creates the listed objects; the CA file is DATA_DIR/mdm/tls/ca.pem on MDM hosts (mdm.ca
// elsewhere), and it verifies every MDM of the cluster.

import { defineCommand } from "citty";
import { consola } from "consola";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { hostname, networkInterfaces } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import oneHostYaml from "../../configs/one-host.yaml" with { type: "text" };
import { parseClusterConfig, type ClusterConfig, type HostConfig } from "../proto/cluster_config.ts";
import { PfError } from "../proto/errors.ts";
import type { MdmEndpoint } from "../proto/mdm_http.ts";
import { applyClusterObjects, loginAdmin, waitForMdm } from "./up_apply.ts";
import { RoleSupervisor, selfCommand } from "./up_supervisor.ts";
import { listNbdExports } from "./nbd_probe.ts";

export const upCommand = defineCommand({
  meta: { name: "up", description: "Start the roles a cluster YAML gives this host (no file: a one-host cluster)" },
  args: {
    config: { type: "positional", description: "cluster YAML (default: built-in one-host cluster)", required: false },
    "data-dir": { type: "string", description: "Directory for all data of this host's roles", default: "./pf-data" },
    host: { type: "string", description: "Which host of the file this is (default: match by name or address)" },
  },
  async run({ args }) {
    const fileName = args.config ? String(args.config) : "(built-in one-host.yaml)";
    const text = args.config ? readConfigFile(String(args.config)) : oneHostYaml;
    const config = parseClusterConfig(text, fileName);
    const dataDir = resolve(args["data-dir"]);
    await up(config, findThisHost(config, args.host), dataDir);
  },
});

function readConfigFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new PfError("BAD_REQUEST", `cannot read cluster file ${path}: ${(e as Error).message}`);
  }
}

function findThisHost(config: ClusterConfig, wanted: string | undefined): HostConfig {
  const name = wanted ?? process.env.PF_HOST;
  if (name) {
    const h = config.hosts.find((x) => x.name === name);
    if (!h) throw new PfError("NOT_FOUND", `host ${name} is not in the cluster file (hosts: ${config.hosts.map((x) => x.name).join(", ")})`);
    return h;
  }
  if (config.hosts.length === 1) return config.hosts[0]!;
  const byName = config.hosts.find((h) => h.name === hostname());
  if (byName) return byName;
  const local = new Set(Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address)));
  const byAddr = config.hosts.filter((h) => local.has(h.address));
  if (byAddr.length === 1) return byAddr[0]!;
  throw new PfError("BAD_REQUEST", `cannot tell which host of the cluster file this is; give --host NAME (hosts: ${config.hosts.map((x) => x.name).join(", ")})`);
}

/** The cluster secret: from the file, else made once and kept in the data dir (mode 0600). */
function clusterSecret(config: ClusterConfig, dataDir: string): string {
  if (config.cluster.secret) return config.cluster.secret;
  const file = join(dataDir, "cluster-secret");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const secret = randomBytes(24).toString("hex");
  writeFileSync(file, secret + "\n", { mode: 0o600 });
  return secret;
}

function mdmHosts(config: ClusterConfig): HostConfig[] {
  return config.hosts.filter((h) => h.mdm);
}

async function up(config: ClusterConfig, host: HostConfig, dataDir: string): Promise<void> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const secret = clusterSecret(config, dataDir);
  const all = mdmHosts(config);
  const scheme = config.mdm.plainHttp ? "http" : "https";
  const mdmUrl = all.map((mh) => `${scheme}://${bracket(mh.address)}:${config.mdm.port}`).join(",");
  const mdmDir = join(dataDir, "mdm");
  const etcd = config.mdm.etcd;
  const caFile = config.mdm.ca ?? config.mdm.tlsCert ?? join(mdmDir, "tls", etcd ? "ca.pem" : "cert.pem");
  // the first MDM host creates the file's objects (one writer; the others only run an MDM)
  const applies = host.mdm && host.name === all[0]!.name;
  const sup = new RoleSupervisor({ env: { PF_CLUSTER_SECRET: secret } });
  const stopAll = async (why: string) => {
    consola.info(`pf up: ${why}; stopping all roles`);
    await sup.stopAll();
    process.exit(0);
  };
  process.on("SIGINT", () => void stopAll("SIGINT"));
  process.on("SIGTERM", () => void stopAll("SIGTERM"));

  try {
    if (host.mdm) {
      const mdmArgs = ["mdm", "--data-dir", mdmDir, "--listen", `${bracket(host.address)}:${config.mdm.port}`];
      if (config.mdm.plainHttp) mdmArgs.push("--plain-http");
      if (config.mdm.tlsCert) mdmArgs.push("--tls-cert", config.mdm.tlsCert);
      if (config.mdm.tlsKey) mdmArgs.push("--tls-key", config.mdm.tlsKey);
      if (config.mdm.heartbeatTimeout !== undefined) mdmArgs.push("--heartbeat-timeout-ms", String(config.mdm.heartbeatTimeout));
      if (config.mdm.rebuildGrace !== undefined) mdmArgs.push("--rebuild-grace-ms", String(config.mdm.rebuildGrace));
      if (config.mdm.stallTimeout !== undefined) mdmArgs.push("--stall-timeout-ms", String(config.mdm.stallTimeout));
      if (etcd) mdmArgs.push("--etcd-endpoints", etcd.endpoints.join(","), "--cluster-name", etcd.clusterName ?? config.cluster.name, "--name", host.name);
      sup.start("mdm", mdmArgs, config.cluster.adminPassword ? { PF_ADMIN_PASSWORD: config.cluster.adminPassword } : {});
    }
    const ep: MdmEndpoint = { url: mdmUrl, clusterSecret: secret };
    await waitForMdm(ep, caFile, () => sup.failed());
    ep.caPem = config.mdm.plainHttp ? null : readFileSync(caFile, "utf8");

    if (applies) {
      ep.token = await loginAdmin(ep, config.cluster.adminPassword ?? readFileSync(join(mdmDir, "admin-password"), "utf8").trim());
      await applyClusterObjects(ep, config, "structure");
    }
    const roleMdmArgs = ["--mdm", mdmUrl, ...(config.mdm.plainHttp ? [] : ["--mdm-ca", caFile])];
    for (const s of host.sds) {
      const [pd, pool] = s.pool.split("/") as [string, string];
      const devArgs = s.devices.flatMap((d) => {
        const p = isAbsolute(d.path) ? d.path : join(dataDir, d.path);
        mkdirSync(dirname(p), { recursive: true });
        return ["--device", d.size === undefined ? p : `${p}:${d.size}`];
      });
      sup.start(`sds ${s.name}`, [
        "sds", ...roleMdmArgs, "--data-dir", join(dataDir, "sds", s.name), "--name", s.name,
        "--listen", `${bracket(host.address)}:${s.port}`, "--protection-domain", pd, "--storage-pool", pool,
        ...(s.faultSet ? ["--fault-set", s.faultSet] : []), ...devArgs,
      ]);
    }
    if (host.sdc) {
      sup.start("sdc", [
        "sdc", ...roleMdmArgs, "--data-dir", join(dataDir, "sdc"), "--name", host.sdc.name ?? host.name,
        "--address", host.address, "--nbd", `${bracket(host.sdc.nbd.host)}:${host.sdc.nbd.port}`,
      ]);
    }
    if (applies) await applyClusterObjects(ep, config, "volumes", () => sup.failed());
    if (host.sdc) await waitForExports(host.sdc.nbd, config.volumes.filter((v) => v.mapTo.some((m) => m.host === host.name)).map((v) => v.name), () => sup.failed());
    printSummary(config, host, dataDir, mdmUrl, caFile);
  } catch (e) {
    await sup.stopAll();
    throw e;
  }
  sup.watch();
}

const WAIT_EXPORTS_MS = 60_000;

/** Wait until this host's SDC lists every volume the file maps to it (maps reach it by heartbeat). */
async function waitForExports(nbd: { host: string; port: number }, names: string[], failed: () => string | null): Promise<void> {
  const deadline = Date.now() + WAIT_EXPORTS_MS;
  let last = "";
  for (;;) {
    const f = failed();
    if (f) throw new PfError("UNAVAILABLE", f);
    try {
      const listed = new Set(await listNbdExports(nbd.host, nbd.port));
      const missing = names.filter((n) => !listed.has(n));
      if (missing.length === 0) return;
      last = `not yet exported: ${missing.join(", ")}`;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) throw new PfError("UNAVAILABLE", `the SDC on ${nbd.host}:${nbd.port} is not serving the mapped volumes after ${WAIT_EXPORTS_MS} ms: ${last}`);
    await Bun.sleep(200);
  }
}

function bracket(addr: string): string {
  return addr.includes(":") ? `[${addr}]` : addr;
}

function printSummary(config: ClusterConfig, host: HostConfig, dataDir: string, mdmUrl: string, caFile: string): void {
  const lines = [`pf is up on host ${host.name} (data in ${dataDir})`];
  if (host.sdc) {
    const nbd = host.sdc.nbd;
    const mine = config.volumes.filter((v) => v.mapTo.some((m) => m.host === host.name));
    for (const v of mine) lines.push(`  NBD:   nbd://${bracket(nbd.host)}:${nbd.port}/${v.name}`);
  }
  lines.push(`  REST:  ${mdmUrl.split(",").map((u) => `${u}/api`).join(", ")}   (certificate: ${caFile})`);
  lines.push(`  scli:  export PF_MDM=${mdmUrl} PF_MDM_CA=${caFile}`);
  const pw = config.cluster.adminPassword ? "<adminPassword from the cluster file>" : `"$(cat ${join(dataDir, "mdm", "admin-password")})"`;
  const pf = selfCommand().join(" ");
  lines.push(`         ${pf} scli --login --username admin --password ${pw}`);
  lines.push(`         ${pf} scli --query_all_volumes`);
  lines.push(`  Stop with Ctrl-C (SIGINT) or SIGTERM; restart with the same command keeps the data.`);
  process.stdout.write(lines.join("\n") + "\n");
}
