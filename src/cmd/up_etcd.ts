// The etcd member `pf up` runs on a host when the cluster file asks (mdm.etcd.embedded: true):
// Debian's etcd binary (etcd-server), started before the MDM as one more supervised role and
// stopped after it, its data in DATA_DIR/etcd, listening on the host's address (client port,
// peer port), with the transaction limits the MDM needs (etcd_meta_store.ts) and revision-based
// auto-compaction. The members of one file form one static cluster (--initial-cluster from the
// file, token = the pf cluster's name); a restart reuses the data dir (etcd then ignores the
// initial-cluster flags). A missing or too old etcd is refused before anything starts, naming
// what to install. With mdm.etcd memberCert/memberKey (and cacert) the member serves clients and
// peers over TLS with that certificate, and asks for client certificates when the MDMs have one.
// Without them (mdm.etcd.tls auto, the default) it serves the same way with the certificates pf
// up derived from cluster.secret (up_etcd_tls.ts), always demanding client certificates; with
// tls: off it serves plain http without authentication.

import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { PfError } from "../proto/errors.ts";
import type { EtcdMemberPlan, HostPlan } from "./host_plan.ts";

/** What the MDM needs of etcd (etcd_meta_store.ts: ETCD_REQUIRED_TXN_OPS, 2 x ETCD_MAX_TXN_BYTES). */
const MAX_TXN_OPS = 4096;
const MAX_REQUEST_BYTES = 2 * 1024 * 1024;
/** keep this many revisions of history (a standby behind it reloads by range) */
const COMPACTION_RETENTION_REVISIONS = 10_000;
const MIN_VERSION: readonly [number, number] = [3, 4];

/** The etcd binary of this host's member, checked: path and version; a clear failure if missing. */
export function resolveEtcdBinary(plan: HostPlan, etcd: EtcdMemberPlan): string {
  const where = `${plan.fileName} asks pf up to run an etcd member on host ${plan.host.name} (mdm.etcd.embedded: true)`;
  const fix = "install etcd (Debian: apt-get install etcd-server), give its path in mdm.etcd.bin, or run etcd yourself and list its client URLs in mdm.etcd.endpoints instead of embedded: true";
  const bin = etcd.bin.includes("/") ? etcd.bin : Bun.which(etcd.bin);
  if (bin === null) throw new PfError("NOT_FOUND", `${where}, but there is no ${etcd.bin} on PATH (${process.env.PATH ?? ""}): ${fix}`);
  if (!existsSync(bin)) throw new PfError("NOT_FOUND", `${where}, but ${bin} (mdm.etcd.bin) does not exist: ${fix}`);
  try {
    accessSync(bin, constants.X_OK);
  } catch {
    throw new PfError("BAD_REQUEST", `${where}, but ${bin} is not executable: ${fix}`);
  }
  const r = Bun.spawnSync([bin, "--version"], { stdout: "pipe", stderr: "pipe" });
  const text = `${r.stdout.toString()}${r.stderr.toString()}`;
  const m = /etcd Version:\s*(\d+)\.(\d+)\.(\d+)/.exec(text);
  if (!r.success || !m) throw new PfError("BAD_REQUEST", `${where}, but ${bin} --version did not name an etcd version (exit ${r.exitCode}: ${text.trim().slice(0, 200)}): ${fix}`);
  const [major, minor] = [Number(m[1]), Number(m[2])];
  if (major < MIN_VERSION[0] || (major === MIN_VERSION[0] && minor < MIN_VERSION[1])) {
    throw new PfError("BAD_REQUEST", `${where}, but ${bin} is etcd ${m[1]}.${m[2]}.${m[3]}; pf needs etcd ${MIN_VERSION.join(".")} or later (its v3 JSON gateway): ${fix}`);
  }
  return bin;
}

/** The member's TLS files (mdm.etcd memberCert, memberKey, cacert) must be readable PEM files. */
export function checkEtcdMemberTls(plan: HostPlan, etcd: EtcdMemberPlan): void {
  if (etcd.tls === null || plan.etcdAutoTls !== null) return; // auto: pf up writes them before etcd starts
  for (const [file, field] of [[etcd.tls.certFile, "memberCert"], [etcd.tls.keyFile, "memberKey"], [etcd.tls.caFile, "cacert"]] as const) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      throw new PfError("NOT_FOUND", `${plan.fileName}: mdm.etcd.${field} ${file} cannot be read on host ${plan.host.name} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); put this host's file there`);
    }
    if (!text.includes("-----BEGIN ")) throw new PfError("BAD_REQUEST", `${plan.fileName}: mdm.etcd.${field} ${file} is not a PEM file`);
  }
}

/** The etcd command line of this host's member. */
export function etcdArgv(bin: string, etcd: EtcdMemberPlan): string[] {
  return [
    bin,
    "--name", etcd.name,
    "--data-dir", etcd.dataDir,
    "--listen-client-urls", etcd.clientUrl,
    "--advertise-client-urls", etcd.clientUrl,
    "--listen-peer-urls", etcd.peerUrl,
    "--initial-advertise-peer-urls", etcd.peerUrl,
    "--initial-cluster", etcd.initialCluster,
    "--initial-cluster-token", etcd.clusterToken,
    "--initial-cluster-state", "new",
    "--max-txn-ops", String(MAX_TXN_OPS),
    "--max-request-bytes", String(MAX_REQUEST_BYTES),
    "--auto-compaction-mode", "revision",
    "--auto-compaction-retention", String(COMPACTION_RETENTION_REVISIONS),
    "--logger", "zap",
    "--log-level", "warn",
    "--log-outputs", "stderr",
    ...(etcd.unsafeNoFsync ? ["--unsafe-no-fsync"] : []),
    ...tlsArgs(etcd.tls),
  ];
}

/** Client and peer TLS of the member: one certificate for both (serverAuth + clientAuth). */
function tlsArgs(tls: EtcdMemberPlan["tls"]): string[] {
  if (tls === null) return [];
  return [
    "--cert-file", tls.certFile,
    "--key-file", tls.keyFile,
    "--trusted-ca-file", tls.caFile,
    ...(tls.clientCertAuth ? ["--client-cert-auth"] : []),
    "--peer-cert-file", tls.certFile,
    "--peer-key-file", tls.keyFile,
    "--peer-trusted-ca-file", tls.caFile,
    "--peer-client-cert-auth",
  ];
}
