// `pf sdc`: the storage data client; serves mapped volumes as NBD exports.

import { join } from "node:path";
import { defineCommand } from "citty";
import { runSdc } from "../sdc/main.ts";
import { PfError } from "../proto/errors.ts";
import { parseHostPort } from "../proto/sizes.ts";
import { DEFAULT_NBD_PORT, DEFAULT_SDC_CONTROL_PORT } from "../proto/cluster_config.ts";
import { applyLogOptions, controlFrom, logArgs, mdmEndpointFrom, mdmSourcesOf, serveUntilSignal } from "./role_options.ts";
import { preflightSdc } from "./role_preflight.ts";
import { parseNbdTlsMode } from "../sdc/nbd_tls.ts";
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
    "nbd-tls": { type: "string", description: "NBD over TLS: off (default), on (clients choose STARTTLS) or require (refuse every client that does not start TLS)" },
    "nbd-tls-dir": { type: "string", description: "Directory for ca-cert.pem, server-cert.pem, server-key.pem (default DATA_DIR/nbd-tls). Empty: the SDC gets a server certificate from the cluster NBD CA at every start and writes it there; the operator's own files (optionally ca-key.pem to issue the server certificate) are used as they are" },
    "nbd-tls-verify-peer": { type: "boolean", description: "With --nbd-tls: clients must present a certificate signed by ca-cert.pem (the cluster NBD CA: scli --issue_nbd_client_certificate)" },
    "data-plane-tls": { type: "boolean", description: "Expect TLS to the SDSs on (--data-plane-tls) or off (--no-data-plane-tls); a different answer from the MDM stops the SDC (absent: as the MDM says)" },
    control: { type: "string", description: `HOST:PORT of the plain-HTTP control port: /health /metrics /status (default: the NBD host, NBD port + 1000, e.g. ${DEFAULT_SDC_CONTROL_PORT}; none = off)` },
    ...logArgs,
  },
  async run({ args }) {
    applyLogOptions(args, "sdc");
    const nbd = parseHostPort(args.nbd, DEFAULT_NBD_PORT);
    if (!nbd) throw new PfError("BAD_REQUEST", `--nbd ${args.nbd} is not HOST:PORT`);
    const tlsMode = parseNbdTlsMode(args["nbd-tls"], "--nbd-tls");
    const tlsDir = args["nbd-tls-dir"] ?? (args["data-dir"] ? join(args["data-dir"], "nbd-tls") : undefined);
    if (tlsMode !== undefined && tlsMode !== "off" && tlsDir === undefined) {
      throw new PfError("BAD_REQUEST", `--nbd-tls ${tlsMode} needs --nbd-tls-dir (or --data-dir, whose nbd-tls folder is then used)`);
    }
    if (args["nbd-tls-verify-peer"] === true && (tlsMode === undefined || tlsMode === "off")) {
      throw new PfError("BAD_REQUEST", "--nbd-tls-verify-peer needs --nbd-tls on or require");
    }
    const mdm = mdmEndpointFrom(args);
    const control = controlFrom(args.control, nbd);
    await preflightSdc({ dataDir: args["data-dir"], nbdHost: nbd.host, nbdPort: nbd.port, control, mdm, sources: mdmSourcesOf(args) });
    await serveUntilSignal("sdc", () =>
      runSdc({
        mdm,
        dataDir: args["data-dir"],
        guid: args.guid,
        name: args.name,
        address: args.address ?? nbd.host,
        nbdHost: nbd.host,
        nbdPort: nbd.port,
        version: PF_VERSION,
        control,
        nbdTls: { mode: tlsMode ?? "off", explicit: tlsMode !== undefined, dir: tlsDir, verifyPeer: args["nbd-tls-verify-peer"] === true },
        dataPlaneTls: args["data-plane-tls"],
      }),
    );
  },
});
