// What `pf mdm`, `pf sds` and `pf sdc` check before they make anything: the port is free, the
// data dir can be made, the files named by flags can be read, the devices can be created and fit,
// and (SDS, SDC) the MDM answers with this certificate and cluster secret. A failed check stops
// the role with one line; no password, certificate, data dir, device or GUID file is left.

import { PfError } from "../proto/errors.ts";
import { Limits } from "../proto/limits.ts";
import type { MdmEndpoint } from "../proto/mdm_http.ts";
import { describeCert } from "../proto/tls_cert.ts";
import { requireUsableDevices, type DeviceUse } from "./device_check.ts";
import { waitForMdmReady } from "./mdm_probe.ts";
import { readNamedFile, requireDataDir } from "./path_check.ts";
import { requireFreePorts } from "./port_probe.ts";
import { mdmWaitMs } from "./role_options.ts";

export async function preflightMdm(o: { dataDir: string; host: string; port: number; tlsCert?: string; tlsKey?: string }): Promise<void> {
  requireDataDir(o.dataDir, "--data-dir DIR");
  if (o.tlsCert !== undefined || o.tlsKey !== undefined) {
    if (o.tlsCert === undefined || o.tlsKey === undefined) throw new PfError("BAD_REQUEST", "give both --tls-cert FILE and --tls-key FILE, or neither (then the MDM makes a self-signed certificate)");
    const cert = readNamedFile(o.tlsCert, "the TLS certificate (--tls-cert)");
    const key = readNamedFile(o.tlsKey, "the TLS key (--tls-key)");
    try {
      describeCert(cert, key);
    } catch (e) {
      throw new PfError("BAD_REQUEST", `--tls-cert ${o.tlsCert} with --tls-key ${o.tlsKey}: ${(e as Error).message}`);
    }
  }
  await requireFreePorts([{ what: "the MDM", host: o.host, port: o.port, change: "--listen HOST:PORT" }]);
}

export async function preflightSds(o: {
  name: string;
  control: { host: string; port: number } | null;
  dataDir: string;
  host: string;
  port: number;
  devices: { path: string; sizeBytes?: number }[];
  mdm: MdmEndpoint;
  sources: { ca: string; secret: string };
}): Promise<void> {
  requireDataDir(o.dataDir, "--data-dir DIR");
  const uses: DeviceUse[] = o.devices.map((d) => ({
    ...d,
    owner: `SDS ${o.name}`,
    field: "--device",
    minBytes: Limits.minDeviceBytes,
    minWhy: "the smallest extent a pool can have",
  }));
  requireUsableDevices(uses, "free space there, or give smaller sizes or other paths with --device");
  await requireFreePorts([{ what: `SDS ${o.name}`, host: o.host, port: o.port, change: "--listen HOST:PORT" }, ...controlPortUse(o.control)]);
  await waitForMdmReady(o.mdm, { who: `sds ${o.name}`, sources: o.sources, waitMs: mdmWaitMs() });
}

export async function preflightSdc(o: { dataDir?: string; nbdHost: string; nbdPort: number; control: { host: string; port: number } | null; mdm: MdmEndpoint; sources: { ca: string; secret: string } }): Promise<void> {
  if (o.dataDir !== undefined) requireDataDir(o.dataDir, "--data-dir DIR");
  await requireFreePorts([{ what: "the SDC's NBD server", host: o.nbdHost, port: o.nbdPort, change: "--nbd HOST:PORT" }, ...controlPortUse(o.control)]);
  await waitForMdmReady(o.mdm, { who: "sdc", sources: o.sources, waitMs: mdmWaitMs() });
}

/** The control port, when there is one and it is not "any free port". */
function controlPortUse(c: { host: string; port: number } | null): { what: string; host: string; port: number; change: string }[] {
  return c === null || c.port === 0 ? [] : [{ what: "the control port", host: c.host, port: c.port, change: "--control HOST:PORT (or none)" }];
}
