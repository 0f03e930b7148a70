// What `pf up` checks before it creates anything (the data dir, the cluster secret, a device
// file) or starts any role: the data dir can be made, the TLS files the file names can be read
// and belong together, the devices can be created and fit, the etcd binary is there when the file
// asks pf up to run etcd (mdm.etcd.embedded), and every port of this host is free.
// The first problem stops pf up with its one line and exit status; nothing is left behind.

import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { PfError } from "../proto/errors.ts";
import { describeCert } from "../proto/tls_cert.ts";
import { requireUsableDevices } from "./device_check.ts";
import type { HostPlan } from "./host_plan.ts";
import { readNamedFile, requireDataDir } from "./path_check.ts";
import { requireFreePorts } from "./port_probe.ts";

export async function preflightUp(plan: HostPlan): Promise<void> {
  requireDataDir(plan.dataDir, "--data-dir DIR");
  requireTlsFiles(plan);
  requireDevicesOutsideRoleDirs(plan);
  if (plan.etcd) {
    // loaded only when the file asks for etcd (test/tidy.test.ts: sqlite mode reaches no etcd module)
    const upEtcd = await import("./up_etcd.ts");
    upEtcd.resolveEtcdBinary(plan, plan.etcd);
    upEtcd.checkEtcdMemberTls(plan, plan.etcd);
    const clash = [plan.mdmDir, ...plan.devices.map((d) => resolve(d.path))].find((p) => p === plan.etcd!.dataDir || p.startsWith(plan.etcd!.dataDir + "/"));
    if (clash !== undefined) throw new PfError("BAD_REQUEST", `${clash} lies in ${plan.etcd.dataDir}, which pf up keeps for the etcd member; give another path`);
  }
  requireUsableDevices(plan.devices, `free space there, or give smaller sizes or other paths in ${plan.fileName}`);
  await requireFreePorts(plan.ports);
}

/** A device file inside a role's own data dir (or on the cluster secret) would break that role. */
function requireDevicesOutsideRoleDirs(plan: HostPlan): void {
  const reserved = [
    join(plan.dataDir, "cluster-secret"),
    join(plan.dataDir, "etcd-tls"),
    plan.mdmDir,
    join(plan.dataDir, "sdc"),
    ...plan.host.sds.map((s) => join(plan.dataDir, "sds", s.name)),
  ];
  for (const d of plan.devices) {
    const p = resolve(d.path);
    const clash = reserved.find((r) => p === r || p.startsWith(r + "/"));
    if (clash !== undefined) {
      throw new PfError("BAD_REQUEST", `device ${d.path} of ${d.owner} (${d.field}) lies in ${clash}, which pf keeps for a role's own files; give another path`);
    }
  }
}

function requireTlsFiles(plan: HostPlan): void {
  const { config, fileName } = plan;
  if (config.mdm.plainHttp) return;
  if (plan.host.mdm && (config.mdm.tlsCert !== undefined || config.mdm.tlsKey !== undefined)) {
    if (config.mdm.tlsCert === undefined || config.mdm.tlsKey === undefined) {
      throw new PfError("BAD_REQUEST", `${fileName}: mdm.tlsCert and mdm.tlsKey go together; give both or neither (then the MDM makes a self-signed certificate)`);
    }
    const cert = readNamedFile(config.mdm.tlsCert, "the MDM certificate (mdm.tlsCert)");
    const key = readNamedFile(config.mdm.tlsKey, "the MDM key (mdm.tlsKey)");
    try {
      describeCert(cert, key);
    } catch (e) {
      throw new PfError("BAD_REQUEST", `mdm.tlsCert ${config.mdm.tlsCert} with mdm.tlsKey ${config.mdm.tlsKey} of ${fileName}: ${(e as Error).message}`);
    }
  }
  if (config.mdm.ca !== undefined) {
    // it may not be there yet (the MDM host makes it on its first start, or it is being copied):
    // pf up then waits for it; a file that is there must be a certificate
    if (!existsSync(config.mdm.ca)) return;
    const pem = readNamedFile(config.mdm.ca, "the MDM certificate (mdm.ca)");
    if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new PfError("BAD_REQUEST", `mdm.ca ${config.mdm.ca} of ${fileName} holds no PEM certificate`);
  } else if (!plan.host.mdm && plan.caFile !== null && !existsSync(plan.caFile)) {
    throw new PfError(
      "BAD_REQUEST",
      `host ${plan.host.name} runs no MDM and ${fileName} gives no mdm.ca: copy the MDM's certificate (its DATA_DIR/mdm/tls/cert.pem) to this host and name it in mdm.ca`,
    );
  }
}
