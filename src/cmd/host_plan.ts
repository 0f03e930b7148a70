// What a cluster file asks of this host, worked out once for `pf up` and `pf doctor`: which host
// of the file this is, the ports its roles will listen on, the device files its SDSs use (paths
// resolved against the data dir), the MDM's URL and the certificate file that verifies it, and
// with an embedded etcd the member's command-line inputs and the etcd TLS files of this host
// (mdm.etcd.tls auto: DATA_DIR/etcd-tls, written by up_etcd_tls.ts; else the file's own).

import { readFileSync } from "node:fs";
import { hostname, networkInterfaces } from "node:os";
import { isAbsolute, join } from "node:path";
import oneHostYaml from "../../configs/one-host.yaml" with { type: "text" };
import { embeddedEtcdHosts, embeddedEtcdTls, etcdMemberUrls, parseClusterConfig, poolExtentBytes, type ClusterConfig, type HostConfig, type SdsConfig } from "../proto/cluster_config.ts";
import { PfError } from "../proto/errors.ts";
import { errnoFailure } from "./cli_failure.ts";
import type { DeviceUse } from "./device_check.ts";
import type { PortUse } from "./port_probe.ts";
import { controlFrom } from "./role_options.ts";

export const BUILT_IN_CLUSTER = "(built-in one-host.yaml)";

/** The cluster file given on the command line, or the built-in one-host cluster. */
export function loadClusterConfig(path: string | undefined): { config: ClusterConfig; fileName: string } {
  if (path === undefined) return { config: parseClusterConfig(oneHostYaml, BUILT_IN_CLUSTER), fileName: BUILT_IN_CLUSTER };
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw errnoFailure(e, `read cluster file ${path}`);
  }
  return { config: parseClusterConfig(text, path), fileName: path };
}

/** This host of the file: --host / PF_HOST, the only host, the host named like this machine, or the one whose address is local. */
export function findThisHost(config: ClusterConfig, wanted: string | undefined, fileName: string): HostConfig {
  const names = config.hosts.map((x) => x.name).join(", ");
  const name = wanted ?? process.env.PF_HOST;
  if (name) {
    const h = config.hosts.find((x) => x.name === name);
    const via = wanted !== undefined ? "--host" : "PF_HOST";
    if (!h) throw new PfError("NOT_FOUND", `host ${name} (${via}) is not in ${fileName}; its hosts are: ${names}`);
    return h;
  }
  if (config.hosts.length === 1) return config.hosts[0]!;
  const byName = config.hosts.find((h) => h.name === hostname());
  if (byName) return byName;
  const local = new Set(Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address)));
  const byAddr = config.hosts.filter((h) => local.has(h.address));
  if (byAddr.length === 1) return byAddr[0]!;
  throw new PfError("BAD_REQUEST", `cannot tell which host of ${fileName} this is (none is named ${hostname()} or has one of its addresses); give --host NAME (hosts: ${names})`);
}

export function bracket(addr: string): string {
  return addr.includes(":") ? `[${addr}]` : addr;
}

export interface PlannedPort extends PortUse {
  /** the role that should hold it once up: "mdm", "sds", "sdc", "etcd" (embedded), and the SDS name */
  role: "mdm" | "sds" | "sdc" | "etcd";
  name: string | null;
}

export interface PlannedDevice extends DeviceUse {
  sds: SdsConfig;
}

export interface HostPlan {
  config: ClusterConfig;
  host: HostConfig;
  hostIndex: number;
  dataDir: string;
  fileName: string;
  mdmHost: HostConfig;
  /** this host creates the file's objects: the first MDM host (one writer; other MDM hosts only run an MDM) */
  appliesObjects: boolean;
  mdmUrl: string;
  /** the certificate that verifies the MDM (null for plain HTTP) */
  caFile: string | null;
  mdmDir: string;
  /** the etcd member pf up runs on this host (mdm.etcd.embedded), or null */
  etcd: EtcdMemberPlan | null;
  /** the files the MDM of this host reaches etcd with (--etcd-cacert/--etcd-cert/--etcd-key), or null (plain http) */
  etcdClient: EtcdClientFiles | null;
  /** mdm.etcd.tls auto: what pf up derives from cluster.secret and writes here before etcd and the MDM start */
  etcdAutoTls: EtcdAutoTlsPlan | null;
  ports: PlannedPort[];
  devices: PlannedDevice[];
}

export interface EtcdMemberPlan {
  /** member name (the host's name) */
  name: string;
  dataDir: string;
  clientUrl: string;
  peerUrl: string;
  /** every member: name=peerUrl, comma-separated (etcd --initial-cluster) */
  initialCluster: string;
  /** etcd --initial-cluster-token: the pf cluster's name, so two files never join one etcd */
  clusterToken: string;
  /** the binary as the file gives it (mdm.etcd.bin), or "etcd" to look up on PATH */
  bin: string;
  unsafeNoFsync: boolean;
  /** TLS of the member (mdm.etcd memberCert/memberKey/cacert); clientCertAuth when the MDMs have a client certificate */
  tls: { certFile: string; keyFile: string; caFile: string; clientCertAuth: boolean } | null;
}

export interface EtcdClientFiles {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export interface EtcdAutoTlsPlan {
  /** DATA_DIR/etcd-tls (0700); keys 0600 */
  dir: string;
  caFile: string;
  /** this host's member certificate (serverAuth + clientAuth, its address), when it runs a member */
  member: { certFile: string; keyFile: string; address: string } | null;
  /** the MDM's etcd client certificate (no CN), when this host runs an MDM */
  mdmClient: { certFile: string; keyFile: string } | null;
}

/** The certificate files of mdm.etcd.tls auto on this host (none when the file gives its own or says off). */
function planEtcdAutoTls(config: ClusterConfig, host: HostConfig, dataDir: string): EtcdAutoTlsPlan | null {
  if (embeddedEtcdTls(config) !== "auto") return null;
  const member = embeddedEtcdHosts(config).includes(host);
  if (!member && !host.mdm) return null;
  const dir = join(dataDir, "etcd-tls");
  return {
    dir,
    caFile: join(dir, "ca.pem"),
    member: member ? { certFile: join(dir, "member.pem"), keyFile: join(dir, "member-key.pem"), address: host.address } : null,
    mdmClient: host.mdm ? { certFile: join(dir, "mdm-client.pem"), keyFile: join(dir, "mdm-client-key.pem") } : null,
  };
}

/** The MDM's etcd TLS files: derived (auto), else what mdm.etcd gives (an external etcd or memberCert mode). */
function planEtcdClient(config: ClusterConfig, auto: EtcdAutoTlsPlan | null): EtcdClientFiles | null {
  if (auto?.mdmClient) return { caFile: auto.caFile, certFile: auto.mdmClient.certFile, keyFile: auto.mdmClient.keyFile };
  const e = config.mdm.etcd;
  if (e === undefined) return null;
  const files: EtcdClientFiles = {
    ...(e.cacert ? { caFile: e.cacert } : {}),
    ...(e.cert && e.key ? { certFile: e.cert, keyFile: e.key } : {}),
  };
  return Object.keys(files).length > 0 ? files : null;
}

function planEtcd(config: ClusterConfig, host: HostConfig, dataDir: string, auto: EtcdAutoTlsPlan | null): EtcdMemberPlan | null {
  const members = embeddedEtcdHosts(config);
  if (!members.includes(host)) return null;
  const urls = etcdMemberUrls(config, host);
  return {
    name: host.name,
    dataDir: join(dataDir, "etcd"),
    ...urls,
    initialCluster: members.map((h) => `${h.name}=${etcdMemberUrls(config, h).peerUrl}`).join(","),
    clusterToken: `pf-${config.mdm.etcd?.clusterName ?? config.cluster.name}`,
    bin: config.mdm.etcd?.bin ?? "etcd",
    unsafeNoFsync: config.mdm.etcd?.unsafeNoFsync === true,
    tls: etcdMemberTls(config, auto),
  };
}

function etcdMemberTls(config: ClusterConfig, auto: EtcdAutoTlsPlan | null): EtcdMemberPlan["tls"] {
  if (auto?.member) return { certFile: auto.member.certFile, keyFile: auto.member.keyFile, caFile: auto.caFile, clientCertAuth: true };
  const e = config.mdm.etcd;
  if (e?.memberCert === undefined || e.memberKey === undefined || e.cacert === undefined) return null;
  return { certFile: e.memberCert, keyFile: e.memberKey, caFile: e.cacert, clientCertAuth: e.cert !== undefined };
}

export function devicePath(dataDir: string, path: string): string {
  return isAbsolute(path) ? path : join(dataDir, path);
}

export function planHost(config: ClusterConfig, host: HostConfig, dataDir: string, fileName: string): HostPlan {
  const hostIndex = config.hosts.indexOf(host);
  const mdmHost = config.hosts.find((h) => h.mdm)!;
  const mdmDir = join(dataDir, "mdm");
  const scheme = config.mdm.plainHttp ? "http" : "https";
  const ports: PlannedPort[] = [];
  const inFile = (field: string) => `${field} in ${fileName}`;
  if (host.mdm) ports.push({ what: "the MDM", host: host.address, port: config.mdm.port, change: inFile("mdm.port"), role: "mdm", name: null });
  host.sds.forEach((s, si) => ports.push({ what: `SDS ${s.name}`, host: host.address, port: s.port, change: inFile(`hosts.${hostIndex}.sds.${si}.port`), role: "sds", name: s.name }));
  if (host.sdc) ports.push({ what: "the SDC's NBD server", host: host.sdc.nbd.host, port: host.sdc.nbd.port, change: inFile(`hosts.${hostIndex}.sdc.nbd`), role: "sdc", name: null });
  // control ports, resolved as the roles resolve them (a default is the role's own port + offset)
  host.sds.forEach((s, si) => {
    const c = controlFrom(s.controlPort === undefined ? undefined : `${bracket(host.address)}:${s.controlPort}`, { host: host.address, port: s.port });
    if (c !== null && c.port !== 0) ports.push({ what: `the control port of SDS ${s.name}`, host: c.host, port: c.port, change: inFile(`hosts.${hostIndex}.sds.${si}.controlPort`), role: "sds", name: s.name });
  });
  if (host.sdc) {
    const sc = host.sdc.control;
    const c = controlFrom(sc === undefined ? undefined : `${bracket(sc.host)}:${sc.port}`, host.sdc.nbd);
    if (c !== null && c.port !== 0) ports.push({ what: "the SDC's control port", host: c.host, port: c.port, change: inFile(`hosts.${hostIndex}.sdc.control`), role: "sdc", name: null });
  }
  const etcdAutoTls = planEtcdAutoTls(config, host, dataDir);
  const etcd = planEtcd(config, host, dataDir, etcdAutoTls);
  if (etcd) {
    for (const [what, url, field] of [["client", etcd.clientUrl, "clientPort"], ["peer", etcd.peerUrl, "peerPort"]] as const) {
      ports.push({ what: `the etcd member's ${what} port`, host: host.address, port: Number(new URL(url).port), change: inFile(`mdm.etcd.${field}`), role: "etcd", name: host.name });
    }
  }
  const devices = host.sds.flatMap((s, si) =>
    s.devices.map((d, di) => ({
      sds: s,
      path: devicePath(dataDir, d.path),
      sizeBytes: d.size,
      owner: `SDS ${s.name}`,
      field: inFile(`hosts.${hostIndex}.sds.${si}.devices.${di}`),
      minBytes: poolExtentBytes(config, s.pool),
      minWhy: `one extent of pool ${s.pool}`,
    })),
  );
  return {
    config,
    host,
    hostIndex,
    dataDir,
    fileName,
    mdmHost,
    appliesObjects: host.mdm && host.name === mdmHost.name,
    // every MDM of the file (HA: the roles follow the active one); one CA verifies them all
    mdmUrl: config.hosts
      .filter((h) => h.mdm)
      .map((h) => `${scheme}://${bracket(h.address)}:${config.mdm.port}`)
      .join(","),
    caFile: config.mdm.plainHttp ? null : (config.mdm.ca ?? config.mdm.tlsCert ?? join(mdmDir, "tls", config.mdm.etcd ? "ca.pem" : "cert.pem")),
    mdmDir,
    etcd,
    etcdClient: planEtcdClient(config, etcdAutoTls),
    etcdAutoTls,
    ports,
    devices,
  };
}
