// `pf doctor`'s checks of the cluster as this host sees it: the MDM's certificate file, the MDM
// reachable with it, the cluster secret accepted, this host's SDSs and SDC joined and connected,
// its NBD server serving the volumes mapped to it (over STARTTLS when the SDC has NBD TLS on), and etcd (not applicable: pf has one MDM).
// A role whose data dir does not exist was never deployed here: not running is then "info"
// (doctor before the first pf up), not a failure.

import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { z } from "zod";
import { isPfError } from "../proto/errors.ts";
import { MdmTlsError, mdmLogin, mdmRequest, type MdmEndpoint } from "../proto/mdm_http.ts";
import { failed, info, ok, warning, type Check } from "./doctor_check.ts";
import type { HostPlan } from "./host_plan.ts";
import { probeMdm, type MdmProbe } from "./mdm_probe.ts";
import { listNbdExports, type NbdProbeTls } from "./nbd_probe.ts";
import { NbdCaAnswer, NbdCertFiles } from "../proto/nbd_certs.ts";

const CERT_EXPIRY_WARN_MS = 30 * 24 * 3600 * 1000;
const Member = z.looseObject({ id: z.string(), name: z.string().nullable(), mdmConnectionState: z.string().optional() });

/** The cluster secret this host would use: the file's, the one pf up keeps, or PF_CLUSTER_SECRET. */
function knownSecret(plan: HostPlan): string | null {
  if (plan.config.cluster.secret) return plan.config.cluster.secret;
  const file = join(plan.dataDir, "cluster-secret");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  return process.env.PF_CLUSTER_SECRET || null;
}

function knownAdminPassword(plan: HostPlan): string | null {
  if (plan.config.cluster.adminPassword) return plan.config.cluster.adminPassword;
  if (process.env.PF_ADMIN_PASSWORD) return process.env.PF_ADMIN_PASSWORD;
  const file = join(plan.mdmDir, "admin-password");
  return plan.host.mdm && existsSync(file) ? readFileSync(file, "utf8").trim() : null;
}

export async function clusterChecks(plan: HostPlan): Promise<Check[]> {
  const cert = certificateCheck(plan);
  const secret = knownSecret(plan);
  const ep: MdmEndpoint = { url: plan.mdmUrl, caPem: cert.pem, clusterSecret: secret ?? undefined, timeoutMs: 3000 };
  const canTry = plan.caFile === null || cert.pem !== null;
  const probe: MdmProbe | null = canTry ? await probeWithoutSecret(ep, secret) : null;
  const out: Check[] = [cert.check, reachCheck(plan, probe), secretCheck(plan, probe, secret)];
  const admin = new AdminSession(ep, knownAdminPassword(plan));
  try {
    out.push(...(await memberChecks(plan, admin, probe)));
    if (plan.host.sdc) out.push(await nbdCheck(plan, admin, probe));
  } finally {
    await admin.close();
  }
  out.push(info("etcd endpoints", "not applicable: the cluster file gives no mdm.etcd endpoints (pf runs a single MDM; HA with etcd is not built yet)"));
  return out;
}

/**
 * One admin login per doctor run, shared by the checks that need one and ended (logout) when the
 * run ends: each refused login counts towards the admin's lock-out (10 in a row lock it for
 * 15 min), so a run with a wrong password costs one failure, not one per check, and a good run
 * leaves no live token behind.
 */
class AdminSession {
  private login: Promise<string> | null = null;

  constructor(
    readonly ep: MdmEndpoint,
    readonly password: string | null,
  ) {}

  /** The authenticated endpoint; a refused login is remembered for the rest of the run. */
  async endpoint(): Promise<MdmEndpoint> {
    if (this.password === null) throw new Error("the admin password is not known on this host");
    this.login ??= mdmLogin(this.ep, "admin", this.password);
    return { ...this.ep, token: await this.login };
  }

  async close(): Promise<void> {
    const token = await this.login?.catch(() => null);
    if (!token) return;
    await mdmRequest({ ...this.ep, token }, { method: "POST", path: "/api/logout", schema: z.unknown() }).catch(() => undefined);
  }
}

/** With no secret known, ask the public API instead (reachability and certificate only). */
async function probeWithoutSecret(ep: MdmEndpoint, secret: string | null): Promise<MdmProbe> {
  if (secret !== null) return probeMdm(ep);
  const t0 = performance.now();
  try {
    await mdmRequest(ep, { method: "GET", path: "/api/version", schema: z.string() });
    return { kind: "ready", latencyMs: performance.now() - t0 };
  } catch (e) {
    if (e instanceof MdmTlsError) return { kind: "certificate", error: e };
    if (isPfError(e)) return { kind: "unreachable", error: e };
    throw e;
  }
}

function certificateCheck(plan: HostPlan): { check: Check; pem: string | null } {
  const name = "MDM certificate";
  const file = plan.caFile;
  if (file === null) return { check: info(name, "plain HTTP on loopback: no certificate"), pem: null };
  if (!existsSync(file)) {
    const madeHere = file.startsWith(plan.mdmDir + "/") || (!plan.config.mdm.ca && !plan.config.mdm.tlsCert);
    if (plan.host.mdm && madeHere && !existsSync(plan.mdmDir)) {
      return { check: info(name, `${file} does not exist yet: the MDM makes it on its first start`), pem: null };
    }
    const fix = plan.host.mdm ? "start the MDM (pf up) to make it, or give mdm.tlsCert" : `copy the MDM's certificate (DATA_DIR/mdm/tls/cert.pem on host ${plan.mdmHost.name}) to ${file}, or name it in mdm.ca`;
    return { check: failed(name, `${file} does not exist`, fix), pem: null };
  }
  const pem = readFileSync(file, "utf8");
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (e) {
    return { check: failed(name, `${file} is not a PEM certificate (${(e as Error).message})`, "give the MDM's certificate file"), pem: null };
  }
  const now = Date.now();
  const notAfter = Date.parse(cert.validTo);
  const notBefore = Date.parse(cert.validFrom);
  const renew = plan.host.mdm && !plan.config.mdm.tlsCert ? `remove ${join(plan.mdmDir, "tls")} and restart the MDM to make a new one (then copy it to the other hosts)` : "renew the certificate (mdm.tlsCert)";
  if (now > notAfter) return { check: failed(name, `${file} expired on ${cert.validTo}`, renew), pem };
  if (now < notBefore) return { check: failed(name, `${file} is valid only from ${cert.validFrom} (is this host's clock right?)`, "fix the clock (NTP) or the certificate"), pem };
  const addr = plan.mdmHost.address;
  const covers = isIP(addr) ? cert.checkIP(addr) !== undefined : cert.checkHost(addr) !== undefined;
  if (!covers) return { check: failed(name, `${file} does not name the MDM address ${addr} (it names ${cert.subjectAltName ?? "nothing"})`, renew), pem };
  if (notAfter - now < CERT_EXPIRY_WARN_MS) return { check: warning(name, `${file} expires on ${cert.validTo}`, renew), pem };
  return { check: ok(name, `${file} names ${addr}, valid until ${cert.validTo}`), pem };
}

function notDeployedMdm(plan: HostPlan): boolean {
  return plan.host.mdm && !existsSync(plan.mdmDir);
}

function reachCheck(plan: HostPlan, probe: MdmProbe | null): Check {
  const name = `MDM reachable (${plan.mdmUrl})`;
  if (probe === null && notDeployedMdm(plan)) return info(name, "not running: the MDM is not deployed on this host yet (pf up starts it)");
  if (probe === null) return info(name, "not checked: no certificate to verify it with (see the MDM certificate check)");
  switch (probe.kind) {
    case "ready":
    case "secret":
      return ok(name, `answers, certificate verified${probe.kind === "ready" ? ` (${Math.round(probe.latencyMs)} ms)` : ""}`);
    case "certificate":
      return failed(name, probe.error.message, `${plan.caFile} is not the MDM's certificate: copy the MDM's DATA_DIR/mdm/tls/cert.pem (or its mdm.tlsCert) there, or fix mdm.ca in ${plan.fileName}`);
    case "unreachable":
      if (notDeployedMdm(plan)) return info(name, "not running: the MDM is not deployed on this host yet (pf up starts it)");
      return failed(
        name,
        probe.error.message,
        plan.host.mdm ? `start it: pf up ${plan.fileName} on this host (its log lines say why it stopped)` : `start pf up on host ${plan.mdmHost.name}, or check its address and mdm.port in ${plan.fileName}`,
      );
    default: {
      const never: never = probe;
      throw new Error(`unhandled probe ${JSON.stringify(never)}`);
    }
  }
}

function secretCheck(plan: HostPlan, probe: MdmProbe | null, secret: string | null): Check {
  const name = "cluster secret";
  if (secret === null) return info(name, `none known yet: pf up makes one in ${join(plan.dataDir, "cluster-secret")} (or set cluster.secret / PF_CLUSTER_SECRET)`);
  if (probe?.kind === "ready") return ok(name, "accepted by the MDM");
  if (probe?.kind === "secret") {
    return failed(name, "the MDM refuses this host's cluster secret", `give every host the MDM's secret: cluster.secret in ${plan.fileName}, or the MDM host's DATA_DIR/cluster-secret as PF_CLUSTER_SECRET`);
  }
  return info(name, "not checked: the MDM is not reachable");
}

async function memberChecks(plan: HostPlan, admin: AdminSession, probe: MdmProbe | null): Promise<Check[]> {
  const wanted = [
    ...plan.host.sds.map((s) => ({ type: "Sds", label: `SDS ${s.name}`, name: s.name, dir: join(plan.dataDir, "sds", s.name) })),
    ...(plan.host.sdc ? [{ type: "Sdc", label: "SDC", name: plan.host.sdc.name ?? plan.host.name, dir: join(plan.dataDir, "sdc") }] : []),
  ];
  const rows = (detail: string, status: "info" | "failed", fix?: string) =>
    wanted.map((w) => (status === "info" ? info(`${w.label} joined`, detail, fix) : failed(`${w.label} joined`, detail, fix ?? "")));
  if (wanted.length === 0) return [];
  if (probe?.kind !== "ready" && probe?.kind !== "secret") return rows("not checked: the MDM is not reachable", "info");
  if (admin.password === null) return rows("not checked: the admin password is not known on this host", "info", "set PF_ADMIN_PASSWORD to check members from here");
  let authed: MdmEndpoint;
  try {
    authed = await admin.endpoint();
  } catch (e) {
    return rows(`admin login refused: ${(e as Error).message}`, "failed", "give the admin password the MDM uses (PF_ADMIN_PASSWORD, or cluster.adminPassword)");
  }
  const lists = new Map<string, z.infer<typeof Member>[]>();
  try {
    for (const type of new Set(wanted.map((w) => w.type))) {
      lists.set(type, await mdmRequest(authed, { method: "GET", path: `/api/types/${type}/instances`, schema: z.array(Member) }));
    }
  } catch (e) {
    return rows(`cannot list members: ${(e as Error).message}`, "failed", "see the MDM's log lines");
  }
  return wanted.map((w) => {
    const name = `${w.label} joined`;
    const m = lists.get(w.type)?.find((x) => x.name === w.name);
    const restart = `restart pf up ${plan.fileName} on this host (Ctrl-C, then run it again: the data is kept); the role's last log lines say why it stopped`;
    if (!m) {
      if (!existsSync(w.dir)) return info(name, "not deployed on this host yet (pf up starts it)");
      return failed(name, `the MDM does not know ${w.label}`, restart);
    }
    const state = m.mdmConnectionState ?? "unknown";
    if (state === "Connected") return ok(name, `Connected (id ${m.id})`);
    return failed(name, `${state} (id ${m.id}): the MDM hears no heartbeats from it`, restart);
  });
}

/**
 * How doctor talks to this host's SDC: plaintext when its NBD TLS is off; else STARTTLS, trusting
 * the cluster NBD CA as the MDM gives it (when the SDC's files came from the cluster and the admin
 * password is known here), or else the ca-cert.pem in its nbd-tls directory; with verify-peer it
 * shows the SDC's own certificate (made for clientAuth too), as pf up's probe does.
 */
async function nbdProbeTls(plan: HostPlan, admin: AdminSession, probe: MdmProbe | null): Promise<{ tls: NbdProbeTls; dir: string } | null> {
  const sdc = plan.host.sdc!;
  if (sdc.nbdTls === undefined || sdc.nbdTls === "off") return null;
  const dir = sdc.nbdTlsDir ?? join(plan.dataDir, "sdc", "nbd-tls");
  const file = (name: string) => join(dir, name);
  // a file this user may not read (server-key.pem is 0600) counts as absent: the probe then
  // shows no client certificate and the check says what the SDC answered
  const read = (name: string): string | undefined => {
    try {
      return readFileSync(file(name), "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT" || (e as NodeJS.ErrnoException).code === "EACCES") return undefined;
      throw e;
    }
  };
  const peer = sdc.nbdTlsVerifyPeer === true ? { certPem: read(NbdCertFiles.serverCert), keyPem: read(NbdCertFiles.serverKey) } : {};
  const serverName = isWildcard(sdc.nbd.host) ? undefined : sdc.nbd.host;
  const fromCluster = existsSync(file(NbdCertFiles.clusterIssued));
  let mdmSaid = "";
  if (fromCluster && admin.password !== null && (probe?.kind === "ready" || probe?.kind === "secret")) {
    try {
      const ca = await mdmRequest(await admin.endpoint(), { method: "GET", path: "/api/pf/nbdCa", schema: NbdCaAnswer });
      return { tls: { caPem: ca.caPem, caName: "the cluster NBD CA (from the MDM)", serverName, ...peer }, dir };
    } catch (e) {
      // the MDM's view is a bonus: the local copy of the CA is checked instead, and that is said
      mdmSaid = `; the MDM's copy could not be read: ${(e as Error).message}`;
    }
  }
  const caPem = read(NbdCertFiles.caCert) ?? "";
  return { tls: { caPem, caName: `${file(NbdCertFiles.caCert)}${fromCluster ? " (the cluster NBD CA as the SDC wrote it" + mdmSaid + ")" : " (the operator's CA)"}`, serverName, ...peer }, dir };
}

function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "[::]" || host === "";
}

async function nbdCheck(plan: HostPlan, admin: AdminSession, probe: MdmProbe | null): Promise<Check> {
  const nbd = plan.host.sdc!.nbd;
  const name = `NBD server ${nbd.host.includes(":") ? `[${nbd.host}]` : nbd.host}:${nbd.port}`;
  const mapped = plan.config.volumes.filter((v) => v.mapTo.some((m) => m.host === plan.host.name)).map((v) => v.name);
  const deployed = existsSync(join(plan.dataDir, "sdc"));
  const tls = await nbdProbeTls(plan, admin, probe);
  if (tls !== null && tls.tls.caPem === "") {
    if (!deployed) return info(name, "not running: the SDC is not deployed on this host yet (pf up starts it)");
    return failed(name, `NBD TLS is ${plan.host.sdc!.nbdTls} but ${join(tls.dir, NbdCertFiles.caCert)} is missing, so the SDC's certificate cannot be checked`, `restart pf up ${plan.fileName} on this host: the SDC writes its certificate and the cluster NBD CA there`);
  }
  let listed: string[];
  try {
    listed = await listNbdExports(nbd.host, nbd.port, tls?.tls);
  } catch (e) {
    if (!deployed) return info(name, "not running: the SDC is not deployed on this host yet (pf up starts it)");
    const msg = (e as Error).message;
    if (tls !== null && /TLS|certificate|verify/i.test(msg)) {
      return failed(name, `NBD over TLS fails: ${msg}`, `restart the SDC (pf up ${plan.fileName}) so that it gets a new server certificate; with the operator's own files in ${tls.dir}, fix them (server-cert.pem signed by ca-cert.pem, naming ${nbd.host})`);
    }
    return failed(name, `not answering NBD (${msg})`, `restart pf up ${plan.fileName} on this host (the sdc log lines say why it stopped)`);
  }
  const missing = mapped.filter((v) => !listed.includes(v));
  if (missing.length > 0) {
    return failed(name, `does not export ${missing.join(", ")} (exports: ${listed.join(", ") || "none"})`, `check the mappings (pf scli --query_volume --volume_name ${missing[0]}) and that the SDC is Connected`);
  }
  const how = tls === null ? "answers NBD" : `answers NBD over TLS (STARTTLS; certificate verified against ${tls.tls.caName}${tls.tls.serverName === undefined ? "" : `, names ${tls.tls.serverName}`})`;
  return ok(name, listed.length > 0 ? `${how}, exports ${listed.join(", ")}` : `${how} (no volumes mapped to this host)`);
}
