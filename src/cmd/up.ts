// `pf up [cluster.yaml]`: start every role the cluster file gives this host, each as its own
// child process (the same binary re-executed with the role's subcommand, so that a kill -9 of
// one role is a real server failure), then create what the file lists (protection domains,
// fault sets, pools, volumes, mappings) through the MDM's REST API. Idempotent: a restart with
// the same data dir reuses every object and keeps the data. With no file, the embedded
// configs/one-host.yaml: a complete one-host cluster under ./pf-data.
//
// Nothing is half-created by a failing start: up_preflight.ts checks ports, paths, devices and
// space before anything is made; a failure after roles started stops every role and names the
// one that failed. A failed *first* start (new data dir) of a one-host file, which no other host
// can have joined, also removes the data dir and device files it made: a retry starts clean.
//
// HA mode (mdm.etcd in the file): every host with mdm: true runs an MDM on etcd; every role is
// given the list of all MDM URLs (it follows the active one); the first MDM host of the file
// creates the listed objects; the CA file is DATA_DIR/mdm/tls/ca.pem on MDM hosts (mdm.ca
// elsewhere), and it verifies every MDM of the cluster. With mdm.etcd.embedded, pf up also runs
// this host's etcd member (up_etcd.ts) as a role, started first and stopped last; unless the file
// gives the members' certificates or says mdm.etcd.tls: off, pf up first derives this host's etcd
// certificates from cluster.secret (up_etcd_tls.ts) so that etcd serves only TLS clients and peers
// with a certificate of that CA, and the MDM is given its client certificate.

import { defineCommand } from "citty";
import { consola } from "consola";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import type { ClusterConfig, HostConfig } from "../proto/cluster_config.ts";
import { PfError } from "../proto/errors.ts";
import type { MdmEndpoint } from "../proto/mdm_http.ts";
import { applyClusterObjects, loginAdmin, waitForMdm } from "./up_apply.ts";
import { RoleSupervisor, selfCommand } from "./up_supervisor.ts";
import { listNbdExports, type NbdProbeTls } from "./nbd_probe.ts";
import { errnoFailure } from "./cli_failure.ts";
import { BUILT_IN_CLUSTER, bracket, findThisHost, loadClusterConfig, planHost, type HostPlan } from "./host_plan.ts";
import { preflightUp } from "./up_preflight.ts";
import { embeddedEtcdTls, etcdEndpointsOf } from "../proto/cluster_config.ts";
import { WaitNotice } from "./wait_notice.ts";
import { controlFrom } from "./role_options.ts";

export const upCommand = defineCommand({
  meta: { name: "up", description: "Start the roles a cluster YAML gives this host (no file: a one-host cluster)" },
  args: {
    config: { type: "positional", description: "cluster YAML (default: built-in one-host cluster)", required: false },
    "data-dir": { type: "string", description: "Directory for all data of this host's roles", default: "./pf-data" },
    host: { type: "string", description: "Which host of the file this is (default: match by name or address)" },
  },
  async run({ args }) {
    const { config, fileName } = loadClusterConfig(args.config ? String(args.config) : undefined);
    const host = findThisHost(config, args.host, fileName);
    const plan = planHost(config, host, resolve(args["data-dir"]), fileName);
    await preflightUp(plan);
    await up(plan);
  },
});

/** The cluster secret: from the file, else made once and kept in the data dir (mode 0600). */
function clusterSecret(config: ClusterConfig, dataDir: string): string {
  if (config.cluster.secret) return config.cluster.secret;
  const file = join(dataDir, "cluster-secret");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const secret = randomBytes(24).toString("hex");
  writeFileSync(file, secret + "\n", { mode: 0o600 });
  return secret;
}

/** What this start made that was not there before; removed again if a first start fails. */
interface FreshPaths {
  dataDir: boolean;
  devices: string[];
}

async function up(plan: HostPlan): Promise<void> {
  const { config, host, dataDir, mdmDir, mdmUrl } = plan;
  const fresh: FreshPaths = { dataDir: !existsSync(dataDir), devices: plan.devices.filter((d) => !existsSync(d.path)).map((d) => d.path) };
  let secret: string;
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    secret = clusterSecret(config, dataDir);
  } catch (e) {
    throw errnoFailure(e, `prepare data dir ${dataDir}`, "give another --data-dir DIR");
  }
  const caFile = plan.caFile ?? ""; // plain HTTP: no certificate
  const sup = new RoleSupervisor({ env: { PF_CLUSTER_SECRET: secret } });
  const stopAll = async (why: string) => {
    consola.info(`pf up: ${why}; stopping all roles`);
    await sup.stopAll();
    process.exit(0);
  };
  process.on("SIGINT", () => void stopAll("SIGINT"));
  process.on("SIGTERM", () => void stopAll("SIGTERM"));

  try {
    if (plan.etcdAutoTls) {
      // loaded only when the file asks for etcd (test/tidy.test.ts: sqlite mode reaches no etcd module)
      const { describeEtcdAutoTls, writeEtcdAutoTls } = await import("./up_etcd_tls.ts");
      writeEtcdAutoTls(secret, plan.etcdAutoTls, host.name);
      consola.info(`pf up: ${describeEtcdAutoTls(plan.etcdAutoTls)}`);
    }
    // the etcd member first (the MDM waits for etcd), so it is stopped last
    if (plan.etcd) {
      try {
        mkdirSync(plan.etcd.dataDir, { recursive: true, mode: 0o700 });
      } catch (e) {
        throw errnoFailure(e, `create the etcd data dir ${plan.etcd.dataDir}`, "give another --data-dir DIR");
      }
      // loaded only when the file asks for etcd (test/tidy.test.ts: sqlite mode reaches no etcd module)
      const { etcdArgv, resolveEtcdBinary } = await import("./up_etcd.ts");
      sup.startProgram("etcd", etcdArgv(resolveEtcdBinary(plan, plan.etcd), plan.etcd));
    }
    if (host.mdm) {
      const mdmArgs = ["mdm", "--data-dir", mdmDir, "--listen", `${bracket(host.address)}:${config.mdm.port}`];
      if (config.mdm.plainHttp) mdmArgs.push("--plain-http");
      if (config.dataPlane.tls) mdmArgs.push("--data-plane-tls");
      if (config.mdm.tlsCert) mdmArgs.push("--tls-cert", config.mdm.tlsCert);
      if (config.mdm.tlsKey) mdmArgs.push("--tls-key", config.mdm.tlsKey);
      if (config.mdm.heartbeatTimeout !== undefined) mdmArgs.push("--heartbeat-timeout-ms", String(config.mdm.heartbeatTimeout));
      if (config.mdm.rebuildGrace !== undefined) mdmArgs.push("--rebuild-grace-ms", String(config.mdm.rebuildGrace));
      if (config.mdm.stallTimeout !== undefined) mdmArgs.push("--stall-timeout-ms", String(config.mdm.stallTimeout));
      if (config.mdm.alerts?.webhook) mdmArgs.push("--alert-webhook", config.mdm.alerts.webhook);
      const etcd = config.mdm.etcd;
      const mdmEnv: Record<string, string> = {};
      if (etcd) {
        mdmArgs.push("--etcd-endpoints", etcdEndpointsOf(config).join(","), "--cluster-name", etcd.clusterName ?? config.cluster.name, "--name", host.name);
        const files = plan.etcdClient;
        if (files?.caFile) mdmArgs.push("--etcd-cacert", files.caFile);
        if (files?.certFile && files.keyFile) mdmArgs.push("--etcd-cert", files.certFile, "--etcd-key", files.keyFile);
        if (etcd.user) mdmArgs.push("--etcd-user", etcd.user);
        // the password goes by environment, not argv (argv is world-readable in /proc)
        const etcdPassword = etcd.password ?? process.env.PF_ETCD_PASSWORD;
        if (etcd.user && etcdPassword) mdmEnv.PF_ETCD_PASSWORD = etcdPassword;
      }
      const given = givenAdminPassword(config.cluster.adminPassword);
      if (given) mdmEnv.PF_ADMIN_PASSWORD = given;
      sup.start("mdm", mdmArgs, mdmEnv);
    }
    const ep: MdmEndpoint = { url: mdmUrl, clusterSecret: secret };
    await waitForMdm(ep, plan, () => sup.failure());
    ep.caPem = config.mdm.plainHttp ? null : readFileSync(caFile, "utf8");

    if (plan.appliesObjects) {
      ep.token = await loginAdmin(ep, adminPasswordForUp(config.cluster.adminPassword, mdmDir));
      await applyClusterObjects(ep, config, "structure");
    }
    // every role is told the file's data-plane TLS setting, so one started against another MDM stops clearly
    const roleMdmArgs = ["--mdm", mdmUrl, ...(config.mdm.plainHttp ? [] : ["--mdm-ca", caFile]), config.dataPlane.tls ? "--data-plane-tls" : "--no-data-plane-tls"];
    for (const s of host.sds) {
      const [pd, pool] = s.pool.split("/") as [string, string];
      const devArgs = plan.devices
        .filter((d) => d.sds === s)
        .flatMap((d) => {
          try {
            mkdirSync(dirname(d.path), { recursive: true });
          } catch (e) {
            throw errnoFailure(e, `create the directory of device ${d.path} (${d.field})`, "give another path");
          }
          return ["--device", d.sizeBytes === undefined ? d.path : `${d.path}:${d.sizeBytes}`];
        });
      sup.start(`sds ${s.name}`, [
        "sds", ...roleMdmArgs, "--data-dir", join(dataDir, "sds", s.name), "--name", s.name,
        "--listen", `${bracket(host.address)}:${s.port}`, "--protection-domain", pd, "--storage-pool", pool,
        ...(s.faultSet ? ["--fault-set", s.faultSet] : []), ...devArgs,
        ...(s.controlPort === undefined ? [] : ["--control", `${bracket(host.address)}:${s.controlPort}`]),
      ]);
    }
    if (host.sdc) {
      sup.start("sdc", [
        "sdc", ...roleMdmArgs, "--data-dir", join(dataDir, "sdc"), "--name", host.sdc.name ?? host.name,
        "--address", host.address, "--nbd", `${bracket(host.sdc.nbd.host)}:${host.sdc.nbd.port}`,
        ...(host.sdc.control === undefined ? [] : ["--control", `${bracket(host.sdc.control.host)}:${host.sdc.control.port}`]),
        ...sdcTlsArgs(host.sdc),
      ]);
    }
    if (plan.appliesObjects) await applyClusterObjects(ep, config, "volumes", () => sup.failure());
    if (host.sdc) await waitForExports(host.sdc.nbd, probeTlsOf(host.sdc, join(dataDir, "sdc")), config.volumes.filter((v) => v.mapTo.some((m) => m.host === host.name)).map((v) => v.name), () => sup.failure());
    // "pf is up" on an etcd-only host (a tie-breaker) means its member takes clients: etcd binds
    // its client port a moment after it starts (a client right after the line was refused)
    if (plan.etcd) await waitForEtcdMember(plan.etcd.clientUrl, () => sup.failure());
    printSummary(plan);
  } catch (e) {
    // a role that died is the cause of whatever pf up saw next (an MDM that stopped answering…)
    await Bun.sleep(100);
    const cause = sup.failure() ?? e;
    const started = sup.labels();
    await sup.stopAll();
    if (started.length > 0) consola.info(`pf up: start-up failed; stopped ${started.join(", ")}`);
    removeFreshPaths(plan, fresh, started.length > 0);
    throw cause;
  }
  sup.watch();
}

/**
 * After a failed first start (the data dir did not exist) of a one-host file, or one that started
 * no role: remove the data dir and the device files this start made, so that a retry starts
 * clean. Only then: with an older data dir the MDM may already have placed data on a new device,
 * and in a multi-host cluster other hosts may have joined a role started here.
 */
function removeFreshPaths(plan: HostPlan, fresh: FreshPaths, rolesStarted: boolean): void {
  if (!fresh.dataDir) return;
  if (plan.config.hosts.length !== 1 && rolesStarted) {
    consola.info(`pf up: kept ${plan.dataDir}: other hosts of ${plan.fileName} may have joined this start`);
    return;
  }
  const removed: string[] = [];
  for (const path of fresh.devices) {
    if (path.startsWith(plan.dataDir + "/")) continue; // goes with the data dir
    for (const p of [path, `${path}.creating`]) {
      if (!existsSync(p)) continue;
      rmSync(p, { force: true });
      removed.push(p);
    }
  }
  if (existsSync(plan.dataDir)) {
    rmSync(plan.dataDir, { recursive: true, force: true });
    removed.push(plan.dataDir);
  }
  if (removed.length > 0) consola.info(`pf up: removed what this failed first start made: ${removed.join(", ")}`);
}

const WAIT_EXPORTS_MS = 60_000;

/** Wait until this host's SDC lists every volume the file maps to it (maps reach it by heartbeat). */
/** pf sdc's TLS flags for a host's sdc section. */
function sdcTlsArgs(sdc: NonNullable<HostConfig["sdc"]>): string[] {
  const out: string[] = [];
  if (sdc.nbdTls !== undefined) out.push("--nbd-tls", sdc.nbdTls);
  if (sdc.nbdTlsDir !== undefined) out.push("--nbd-tls-dir", sdc.nbdTlsDir);
  if (sdc.nbdTlsVerifyPeer === true) out.push("--nbd-tls-verify-peer");
  return out;
}

/**
 * How the export probe gets past an SDC with nbdTls: require (STARTTLS first, trusting the SDC's
 * ca-cert.pem; with verify-peer it shows the SDC's own certificate, which checkPeer accepts as that
 * SDC's own, whatever its usage). Read at each try: the SDC writes the files when it starts.
 */
function probeTlsOf(sdc: NonNullable<HostConfig["sdc"]>, sdcDataDir: string): () => NbdProbeTls | undefined {
  return () => {
    if (sdc.nbdTls !== "require") return undefined;
    const dir = sdc.nbdTlsDir ?? join(sdcDataDir, "nbd-tls");
    const read = (f: string) => readFileSync(join(dir, f), "utf8");
    if (sdc.nbdTlsVerifyPeer !== true) return { caPem: read("ca-cert.pem") };
    return { caPem: read("ca-cert.pem"), certPem: read("server-cert.pem"), keyPem: read("server-key.pem") };
  };
}

const WAIT_ETCD_MS = 30_000;

/** Wait until this host's etcd member accepts connections on its client URL. */
async function waitForEtcdMember(clientUrl: string, failed: () => PfError | null): Promise<void> {
  const url = new URL(clientUrl);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  const deadline = Date.now() + WAIT_ETCD_MS;
  for (;;) {
    const f = failed();
    if (f) throw f;
    const listening = await new Promise<boolean>((resolve) => {
      const sock = connect({ host, port }, () => {
        sock.destroy();
        resolve(true);
      });
      sock.once("error", () => resolve(false));
    });
    if (listening) return;
    if (Date.now() > deadline) {
      throw new PfError("UNAVAILABLE", `this host's etcd member does not accept connections on ${clientUrl} after ${WAIT_ETCD_MS / 1000} s; see the etcd log lines above`);
    }
    await Bun.sleep(100);
  }
}

async function waitForExports(nbd: { host: string; port: number }, tls: () => NbdProbeTls | undefined, names: string[], failed: () => PfError | null): Promise<void> {
  const deadline = Date.now() + WAIT_EXPORTS_MS;
  const notice = new WaitNotice("pf up");
  let last = "";
  for (;;) {
    const f = failed();
    if (f) throw f;
    try {
      const listed = new Set(await listNbdExports(nbd.host, nbd.port, tls()));
      const missing = names.filter((n) => !listed.has(n));
      if (missing.length === 0) return;
      last = `not yet exported: ${missing.join(", ")}`;
    } catch (e) {
      last = `NBD server not answering: ${(e as Error).message}`;
    }
    notice.update(`the SDC on ${bracket(nbd.host)}:${nbd.port} to export ${names.join(", ")} (${last})`);
    if (Date.now() > deadline) {
      throw new PfError("UNAVAILABLE", `the SDC on ${bracket(nbd.host)}:${nbd.port} is not serving the mapped volumes after ${WAIT_EXPORTS_MS / 1000} s (${last}); see the sdc log lines above`);
    }
    await Bun.sleep(200);
  }
}

/** The control ports of this host's SDSs and SDC, as their commands resolve them (role_options.ts). */
function controlUrls(host: HostConfig): { role: string; url: string }[] {
  const url = (hp: { host: string; port: number } | null) =>
    hp === null ? null : hp.port === 0 ? `http://${bracket(hp.host)}:<any free port, in the role's log>` : `http://${bracket(hp.host)}:${hp.port}`;
  const out: { role: string; url: string }[] = [];
  for (const s of host.sds) {
    const u = url(controlFrom(s.controlPort === undefined ? undefined : `${bracket(host.address)}:${s.controlPort}`, { host: host.address, port: s.port }));
    if (u !== null) out.push({ role: `sds ${s.name}`, url: u });
  }
  if (host.sdc) {
    const c = host.sdc.control;
    const u = url(controlFrom(c === undefined ? undefined : `${bracket(c.host)}:${c.port}`, host.sdc.nbd));
    if (u !== null) out.push({ role: "sdc", url: u });
  }
  return out;
}

function printSummary(plan: HostPlan): void {
  const { config, host, dataDir, mdmUrl, caFile } = plan;
  const lines = [`pf is up on host ${host.name} (data in ${dataDir})`];
  if (host.sdc) {
    const nbd = host.sdc.nbd;
    const mine = config.volumes.filter((v) => v.mapTo.some((m) => m.host === host.name));
    const scheme = host.sdc.nbdTls === "require" ? "nbds" : "nbd";
    for (const v of mine) lines.push(`  NBD:   ${scheme}://${bracket(nbd.host)}:${nbd.port}/${v.name}`);
    if (host.sdc.nbdTls === "require" || host.sdc.nbdTls === "on") {
      const dir = host.sdc.nbdTlsDir ?? join(dataDir, "sdc", "nbd-tls");
      lines.push(`  NBD TLS: CA in ${join(dir, "ca-cert.pem")}; client material: ${selfCommand().join(" ")} scli --issue_nbd_client_certificate --name NAME --out_dir DIR`);
    }
  }
  lines.push(`  REST:  ${mdmUrl.split(",").map((u) => `${u}/api`).join(", ")}${caFile ? `   (certificate: ${caFile})` : ""}`);
  lines.push(`  Web:   ${mdmUrl}/dashboard/   (the same users as REST)`);
  for (const c of controlUrls(host)) lines.push(`  control ${c.role}: ${c.url}  (/health /metrics /status)`);
  lines.push(...etcdSummary(plan));
  lines.push(`  scli:  export PF_MDM=${mdmUrl}${caFile ? ` PF_MDM_CA=${caFile}` : ""}`);
  const pw = config.cluster.adminPassword
    ? "<adminPassword from the cluster file>"
    : process.env.PF_ADMIN_PASSWORD
      ? '"$PF_ADMIN_PASSWORD"'
      : `"$(cat ${join(dataDir, "mdm", "admin-password")})"`;
  const pf = selfCommand().join(" ");
  lines.push(`         ${pf} scli --login --username admin --password ${pw}`);
  lines.push(`         ${pf} scli --query_all_volumes`);
  const file = plan.fileName === BUILT_IN_CLUSTER ? "" : ` ${plan.fileName}`;
  lines.push(`  Check: ${pf} doctor${file} --data-dir ${dataDir}${config.hosts.length > 1 ? ` --host ${host.name}` : ""}`);
  lines.push(`  Stop with Ctrl-C (SIGINT) or SIGTERM; restart with the same command keeps the data.`);
  process.stdout.write(lines.join("\n") + "\n");
}

/** The summary's etcd lines: the endpoints, how they are secured, and the files an etcdctl needs. */
function etcdSummary(plan: HostPlan): string[] {
  const tls = embeddedEtcdTls(plan.config);
  if (tls === null) return [];
  const endpoints = etcdEndpointsOf(plan.config).join(",");
  if (tls === "off") return [`  etcd:  ${endpoints}   (NOT secured: plain http, no authentication; mdm.etcd.tls: off)`];
  const how = tls === "auto" ? "TLS + client certificates, CA derived from cluster.secret" : "TLS with the file's memberCert/cacert";
  const lines = [`  etcd:  ${endpoints}   (secured: ${how})`];
  const c = plan.etcdClient;
  if (c?.caFile && c.certFile && c.keyFile) lines.push(`         etcdctl --endpoints ${endpoints} --cacert ${c.caFile} --cert ${c.certFile} --key ${c.keyFile} endpoint health`);
  else if (plan.etcdAutoTls) lines.push(`         etcd TLS files: ${plan.etcdAutoTls.dir} (CA ${plan.etcdAutoTls.caFile})`);
  return lines;
}

/** The admin password pf up was given: the cluster file's, else PF_ADMIN_PASSWORD (the MDM sets it). */
function givenAdminPassword(fromFile: string | undefined): string | undefined {
  return fromFile ?? (process.env.PF_ADMIN_PASSWORD || undefined);
}

/**
 * The password pf up logs in with to apply the cluster's objects: the one it was given, else the
 * one the MDM generated into its data dir on first start.
 */
function adminPasswordForUp(fromFile: string | undefined, mdmDir: string): string {
  const given = givenAdminPassword(fromFile);
  if (given !== undefined) return given;
  const file = join(mdmDir, "admin-password");
  if (!existsSync(file)) {
    throw new PfError(
      "NOT_FOUND",
      `pf up: no admin password: the MDM keeps its generated one in ${file} only when none was given, and that file is missing; set PF_ADMIN_PASSWORD or cluster.adminPassword to the MDM's admin password`,
    );
  }
  return readFileSync(file, "utf8").trim();
}
