// `pf sdc`: the storage data client; serves mapped volumes as NBD exports.

import { defineCommand } from "citty";
import { runSdc } from "../sdc/main.ts";
import { PfError } from "../proto/errors.ts";
import { parseHostPort } from "../proto/sizes.ts";
import { DEFAULT_NBD_PORT, DEFAULT_SDC_CONTROL_PORT } from "../proto/cluster_config.ts";
import { applyLogOptions, controlFrom, logArgs, mdmEndpointFrom, serveUntilSignal } from "./role_options.ts";
import { PF_VERSION } from "./version.ts";

export const sdcCommand = defineCommand({
  meta: { name: "sdc", description: "Run a storage data client serving mapped volumes over NBD" },
  args: {
    mdm: { type: "string", description: "MDM URL, https://HOST:PORT (or PF_MDM)" },
    "mdm-ca": { type: "string", description: "MDM certificate PEM file (or PF_MDM_CA)" },
    "cluster-secret-file": { type: "string", description: "File holding the cluster secret (or PF_CLUSTER_SECRET)" },
    nbd: { type: "string", description: `HOST:PORT for the NBD server (default 127.0.0.1:${DEFAULT_NBD_PORT})`, default: `127.0.0.1:${DEFAULT_NBD_PORT}` },
    "data-dir": { type: "string", description: "Directory keeping this SDC's GUID (default: none, GUID from --guid)" },
    guid: { type: "string", description: "SDC GUID (default: kept in --data-dir, made on first start)" },
    name: { type: "string", description: "SDC name" },
    address: { type: "string", description: "Address the MDM shows for this SDC (default: the NBD host)" },
    control: { type: "string", description: `HOST:PORT of the plain-HTTP control port: /health /metrics /status (default: the NBD host, NBD port + 1000, e.g. ${DEFAULT_SDC_CONTROL_PORT}; none = off)` },
    ...logArgs,
  },
  async run({ args }) {
    applyLogOptions(args, "sdc");
    const nbd = parseHostPort(args.nbd, DEFAULT_NBD_PORT);
    if (!nbd) throw new PfError("BAD_REQUEST", `--nbd ${args.nbd} is not HOST:PORT`);
    const control = controlFrom(args.control, nbd);
    await serveUntilSignal("sdc", () =>
      runSdc({
        mdm: mdmEndpointFrom(args),
        dataDir: args["data-dir"],
        guid: args.guid,
        name: args.name,
        address: args.address ?? nbd.host,
        nbdHost: nbd.host,
        nbdPort: nbd.port,
        version: PF_VERSION,
        control,
      }),
    );
  },
});
