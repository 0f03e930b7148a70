// Flag helpers shared by the role commands: repeated flags, secrets and the MDM endpoint.
// Secrets come from files or the environment, never from argv (argv is visible in ps).

import { readFileSync } from "node:fs";
import { consola } from "consola";
import { PfError } from "../proto/errors.ts";
import { Limits } from "../proto/limits.ts";
import type { MdmEndpoint } from "../proto/mdm_http.ts";
import { errnoFailure } from "./cli_failure.ts";

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
    throw errnoFailure(e, `read ${what} from ${path}`);
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

/** Where the MDM certificate and the cluster secret came from, for messages that say what to fix. */
export function mdmSourcesOf(args: { "mdm-ca"?: string; "cluster-secret-file"?: string }): { ca: string; secret: string } {
  const caFile = args["mdm-ca"] ?? process.env.PF_MDM_CA;
  return {
    ca: args["mdm-ca"] ? `--mdm-ca ${args["mdm-ca"]}` : caFile ? `PF_MDM_CA=${caFile}` : "no certificate",
    secret: args["cluster-secret-file"] ? `--cluster-secret-file ${args["cluster-secret-file"]}` : "PF_CLUSTER_SECRET",
  };
}

/** How long a starting role waits for an unreachable MDM: PF_MDM_WAIT_MS, else Limits.mdmStartWaitMs. */
export function mdmWaitMs(): number {
  const v = process.env.PF_MDM_WAIT_MS;
  if (v === undefined || v === "") return Limits.mdmStartWaitMs;
  if (!/^\d+$/.test(v.trim())) throw new PfError("BAD_REQUEST", `PF_MDM_WAIT_MS=${v} is not a whole number of milliseconds`);
  return Number(v.trim());
}

/**
 * Run a long-lived role until SIGINT/SIGTERM. A failing start throws (main.ts prints the one
 * line and exits with its kind's status).
 */
export async function serveUntilSignal(name: string, start: () => Promise<{ stop(): Promise<void> }>): Promise<void> {
  const handle = await start();
  // Under `pf up` our output goes through a pipe to it; if pf up is killed the pipe breaks. The
  // role keeps serving (its clients do not depend on pf up); only its log lines are lost.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code !== "EPIPE") throw e;
    });
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
