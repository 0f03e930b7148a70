// Flag helpers shared by the role commands: repeated flags, secrets, the MDM endpoint, the
// control port and logging (--log-level, --log-format). Secrets come from files or the
// environment, never from argv (argv is visible in ps).

import { readFileSync } from "node:fs";
import { formatWithOptions } from "node:util";
import { consola, type LogObject } from "consola";
import { z } from "zod";
import { PfError, isPfError, exitStatusOf } from "../proto/errors.ts";
import { Limits } from "../proto/limits.ts";
import type { MdmEndpoint } from "../proto/mdm_http.ts";
import { parseHostPort } from "../proto/sizes.ts";

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

// ---- logging ----

export const LogLevelName = z.enum(["error", "warn", "info", "debug"]);
export type LogLevelName = z.infer<typeof LogLevelName>;
export const LogFormat = z.enum(["text", "json"]);
export type LogFormat = z.infer<typeof LogFormat>;

/** consola's numeric level for each name (consola: 0 error, 1 warn, 3 info, 4 debug) */
const CONSOLA_LEVEL_OF: Record<LogLevelName, number> = { error: 0, warn: 1, info: 3, debug: 4 };

/** citty argument definitions every long-lived role takes (spread into its args). */
export const logArgs = {
  "log-level": { type: "string", description: "error | warn | info | debug (default info, or CONSOLA_LEVEL)" },
  "log-format": { type: "string", description: "text | json: json writes one object per line {time, level, role, message}", default: "text" },
} as const;

/**
 * Apply --log-level and --log-format. A level not given keeps consola's own (CONSOLA_LEVEL or
 * info); json replaces the reporters with one writing a JSON object per line: errors and warnings
 * to stderr, the rest to stdout, as consola's text reporter does.
 */
export function applyLogOptions(args: { "log-level"?: string; "log-format"?: string }, role: string): void {
  const level = args["log-level"] === undefined || args["log-level"] === "" ? null : parseFlag(LogLevelName, args["log-level"], "--log-level");
  const format = parseFlag(LogFormat, args["log-format"] ?? "text", "--log-format");
  if (level !== null) consola.level = CONSOLA_LEVEL_OF[level];
  if (format === "json") consola.setReporters([{ log: (o: LogObject) => writeJsonLine(o, role) }]);
}

function parseFlag<T extends z.ZodEnum>(schema: T, value: string, flag: string): z.infer<T> {
  const r = schema.safeParse(value.trim().toLowerCase());
  if (!r.success) throw new PfError("BAD_REQUEST", `${flag} ${value}: expected one of ${schema.options.join(", ")}`);
  return r.data;
}

/** consola's log types named by the four levels pf documents (fatal -> error, success -> info, ...). */
function levelName(o: LogObject): LogLevelName {
  if (o.level <= 0) return "error";
  if (o.level === 1) return "warn";
  if (o.level <= 3) return "info";
  return "debug";
}

function writeJsonLine(o: LogObject, role: string): void {
  const args: unknown[] = o.message === undefined ? o.args : [o.message, ...o.args];
  const line = JSON.stringify({ time: o.date.toISOString(), level: levelName(o), role, message: formatWithOptions({ colors: false, breakLength: Infinity }, ...args) });
  (o.level < 2 ? process.stderr : process.stdout).write(line + "\n");
}

// ---- control port ----

/**
 * The control port from --control: "none" (or "off") = no control port; absent = the role's own
 * host with its port + Limits.controlPortOffset (port 0 stays 0, i.e. a free port).
 */
export function controlFrom(flag: string | undefined, own: { host: string; port: number }, flagName = "--control"): { host: string; port: number } | null {
  if (flag !== undefined && /^(none|off)$/i.test(flag.trim())) return null;
  if (flag === undefined || flag === "") return { host: own.host, port: defaultControlPort(own.port, flagName) };
  const hp = parseHostPort(flag, defaultControlPort(own.port, flagName));
  if (hp === null) throw new PfError("BAD_REQUEST", `${flagName} ${flag} is not HOST:PORT (or none)`);
  return hp;
}

function defaultControlPort(port: number, flagName: string): number {
  if (port === 0) return 0;
  const p = port + Limits.controlPortOffset;
  if (p > 65535) throw new PfError("BAD_REQUEST", `the default control port ${port}+${Limits.controlPortOffset} is over 65535; give ${flagName} HOST:PORT`);
  return p;
}
