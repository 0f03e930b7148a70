// Flag helpers shared by the role commands: repeated flags, secrets and the MDM endpoint.
// Secrets come from files or the environment, never from argv (argv is visible in ps).

import { readFileSync } from "node:fs";
import { consola } from "consola";
import { PfError, isPfError, exitStatusOf } from "../proto/errors.ts";
import type { MdmEndpoint } from "../proto/mdm_http.ts";

/** Every value of a repeatable flag (citty keeps only the last): `--flag V` and `--flag=V`. */
export function repeatedFlag(rawArgs: string[], flag: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const a = rawArgs[i]!;
    if (a === `--${flag}` && i + 1 < rawArgs.length) out.push(rawArgs[++i]!);
    else if (a.startsWith(`--${flag}=`)) out.push(a.slice(flag.length + 3));
  }
  return out;
}

export function readSecretFile(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (e) {
    throw new PfError("BAD_REQUEST", `cannot read ${what} from ${path}: ${(e as Error).message}`);
  }
}

/** Cluster secret from --cluster-secret-file or PF_CLUSTER_SECRET. */
export function clusterSecretFrom(file: string | undefined, required: boolean): string | undefined {
  if (file) return readSecretFile(file, "the cluster secret");
  const env = process.env.PF_CLUSTER_SECRET;
  if (env) return env;
  if (required) throw new PfError("BAD_REQUEST", "no cluster secret: give --cluster-secret-file FILE or set PF_CLUSTER_SECRET");
  return undefined;
}

export function mdmEndpointFrom(args: { mdm?: string; "mdm-ca"?: string; "cluster-secret-file"?: string }): MdmEndpoint {
  const url = args.mdm ?? process.env.PF_MDM;
  if (!url) throw new PfError("BAD_REQUEST", "no MDM address: give --mdm https://HOST:PORT or set PF_MDM");
  const caFile = args["mdm-ca"] ?? process.env.PF_MDM_CA;
  const caPem = caFile ? readSecretFile(caFile, "the MDM certificate") : null;
  return { url, caPem, clusterSecret: clusterSecretFrom(args["cluster-secret-file"], true) };
}

/** Run a long-lived role until SIGINT/SIGTERM; errors become one clear line and an exit status. */
export async function serveUntilSignal(name: string, start: () => Promise<{ stop(): Promise<void> }>): Promise<void> {
  let handle: { stop(): Promise<void> };
  try {
    handle = await start();
  } catch (e) {
    if (isPfError(e)) {
      consola.error(`${name}: ${e.code}: ${e.message}`);
      process.exit(exitStatusOf[e.code]);
    }
    throw e;
  }
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    consola.info(`${name}: ${sig}, stopping`);
    handle.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        consola.error(`${name}: stop failed: ${String(e)}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}
