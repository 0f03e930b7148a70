// `pf mdm`: the metadata manager (topology, placement, health, REST API).

import { defineCommand } from "citty";
import { runMdm } from "../mdm/main.ts";
import { PfError } from "../proto/errors.ts";
import { parseHostPort } from "../proto/sizes.ts";
import { DEFAULT_MDM_PORT } from "../proto/cluster_config.ts";
import { clusterSecretFrom, readSecretFile, serveUntilSignal } from "./role_options.ts";

export const mdmCommand = defineCommand({
  meta: { name: "mdm", description: "Run the metadata manager (REST API on HTTPS, default port 6611)" },
  args: {
    "data-dir": { type: "string", description: "Directory for the MDM database, certificate and secrets", required: true },
    listen: { type: "string", description: `HOST:PORT to serve on (default 127.0.0.1:${DEFAULT_MDM_PORT})`, default: `127.0.0.1:${DEFAULT_MDM_PORT}` },
    "cluster-secret-file": { type: "string", description: "File holding the cluster secret (or PF_CLUSTER_SECRET; generated when absent)" },
    "admin-password-file": { type: "string", description: "File holding the admin password (or PF_ADMIN_PASSWORD; generated when absent)" },
    "tls-cert": { type: "string", description: "PEM certificate to serve (default: self-signed, made in the data dir)" },
    "tls-key": { type: "string", description: "PEM private key for --tls-cert" },
    "plain-http": { type: "boolean", description: "Serve plain HTTP (only allowed on a loopback address)", default: false },
  },
  async run({ args }) {
    const hp = parseHostPort(args.listen, DEFAULT_MDM_PORT);
    if (!hp) throw new PfError("BAD_REQUEST", `--listen ${args.listen} is not HOST:PORT`);
    const adminPassword = args["admin-password-file"]
      ? readSecretFile(args["admin-password-file"], "the admin password")
      : process.env.PF_ADMIN_PASSWORD;
    await serveUntilSignal("mdm", () =>
      runMdm({
        dataDir: args["data-dir"],
        listenHost: hp.host,
        listenPort: hp.port,
        clusterSecret: clusterSecretFrom(args["cluster-secret-file"], false),
        adminPassword: adminPassword || undefined,
        tlsCertFile: args["tls-cert"],
        tlsKeyFile: args["tls-key"],
        plainHttp: args["plain-http"],
      }),
    );
  },
});
