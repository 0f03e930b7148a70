// `pf sds`: a storage data server (block files, data plane, replication).

import { defineCommand } from "citty";
import { hostname } from "node:os";
import { runSds } from "../sds/main.ts";
import { PfError } from "../proto/errors.ts";
import { parseHostPort, parseSizeBytes } from "../proto/sizes.ts";
import { DEFAULT_SDS_CONTROL_PORT, DEFAULT_SDS_PORT } from "../proto/cluster_config.ts";
import { applyLogOptions, controlFrom, logArgs, repeatedFlag, mdmEndpointFrom, mdmSourcesOf, serveUntilSignal } from "./role_options.ts";
import { preflightSds } from "./role_preflight.ts";
import { PF_VERSION } from "./version.ts";

/** "PATH[:SIZE]" -> device spec; a size creates and preallocates the file when missing. */
export function parseDeviceFlag(text: string): { path: string; sizeBytes?: number } {
  const m = /^(.+?)(?::([0-9.]+[a-zA-Z]*))?$/.exec(text);
  if (!m) throw new PfError("BAD_REQUEST", `--device ${text}: expected PATH[:SIZE]`);
  if (m[2] === undefined) return { path: m[1]! };
  const sizeBytes = parseSizeBytes(m[2]);
  if (sizeBytes === null || sizeBytes === 0) throw new PfError("BAD_REQUEST", `--device ${text}: ${m[2]} is not a size (e.g. 1GiB)`);
  return { path: m[1]!, sizeBytes };
}

export const sdsCommand = defineCommand({
  meta: { name: "sds", description: "Run a storage data server" },
  args: {
    mdm: { type: "string", description: "MDM URL, https://HOST:PORT (or PF_MDM)" },
    "mdm-ca": { type: "string", description: "MDM certificate PEM file (or PF_MDM_CA)" },
    "cluster-secret-file": { type: "string", description: "File holding the cluster secret (or PF_CLUSTER_SECRET)" },
    "data-dir": { type: "string", description: "Directory for the SDS's metadata", required: true },
    device: { type: "string", description: "PATH[:SIZE] block file or block device; repeat for more", required: true },
    name: { type: "string", description: "SDS name (default: host name)" },
    listen: { type: "string", description: `HOST:PORT of the data plane (default 127.0.0.1:${DEFAULT_SDS_PORT}); HOST is advertised to peers`, default: `127.0.0.1:${DEFAULT_SDS_PORT}` },
    "protection-domain": { type: "string", description: "Protection domain name", default: "pd1" },
    "storage-pool": { type: "string", description: "Storage pool name", default: "sp1" },
    "fault-set": { type: "string", description: "Fault set name" },
    control: { type: "string", description: `HOST:PORT of the plain-HTTP control port: /health /metrics /status (default: the --listen host, data port + 1000, e.g. ${DEFAULT_SDS_CONTROL_PORT}; none = off)` },
    "data-plane-tls": { type: "boolean", description: "Expect data-plane TLS on (--data-plane-tls) or off (--no-data-plane-tls); a different answer from the MDM stops the SDS (absent: as the MDM says)" },
    ...logArgs,
  },
  async run({ args, rawArgs }) {
    applyLogOptions(args, "sds");
    const hp = parseHostPort(args.listen, DEFAULT_SDS_PORT);
    if (!hp) throw new PfError("BAD_REQUEST", `--listen ${args.listen} is not HOST:PORT`);
    const control = controlFrom(args.control, hp);
    const devices = repeatedFlag(rawArgs, "device").map(parseDeviceFlag);
    const mdm = mdmEndpointFrom(args);
    const name = args.name ?? hostname().replace(/[^A-Za-z0-9_.:-]/g, "-").slice(0, 31);
    await preflightSds({ name, control, dataDir: args["data-dir"], host: hp.host, port: hp.port, devices, mdm, sources: mdmSourcesOf(args) });
    await serveUntilSignal("sds", () =>
      runSds({
        mdm,
        dataDir: args["data-dir"],
        name,
        host: hp.host,
        port: hp.port,
        devices,
        protectionDomainName: args["protection-domain"],
        storagePoolName: args["storage-pool"],
        faultSetName: args["fault-set"],
        version: PF_VERSION,
        control,
        dataPlaneTls: args["data-plane-tls"],
      }),
    );
  },
});
