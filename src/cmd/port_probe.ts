// Is a TCP port of this host free to listen on? A role checks its ports this way before it makes
// anything (a data dir, a password, a certificate, a device file), so that a port in use stops it
// with nothing half-created; `pf up` and `pf doctor` check every port of the host at once.
// The probe binds and closes at once; a port taken between the probe and the real listen still
// fails there, with the role's own error.

import { createServer } from "node:net";
import { PfError } from "../proto/errors.ts";
import { describeHolder, portHolder, type PortHolder } from "./port_owner.ts";

export type PortState =
  | { state: "free" }
  | { state: "in-use"; holder: PortHolder | null }
  /** the address is not on this host (EADDRNOTAVAIL) or not usable (EACCES for ports < 1024…) */
  | { state: "unusable"; errno: string; text: string };

const PROBE_TIMEOUT_MS = 2000;

export function probePort(host: string, port: number): Promise<PortState> {
  return new Promise((resolve) => {
    const srv = createServer();
    const timer = setTimeout(() => {
      srv.close();
      resolve({ state: "unusable", errno: "ETIMEDOUT", text: `binding ${host}:${port} took over ${PROBE_TIMEOUT_MS} ms` });
    }, PROBE_TIMEOUT_MS);
    srv.once("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === "EADDRINUSE") resolve({ state: "in-use", holder: portHolder(port) });
      else resolve({ state: "unusable", errno: e.code ?? "EINVAL", text: e.message });
    });
    srv.listen({ host: host.replace(/^\[|\]$/g, ""), port, exclusive: true }, () => {
      clearTimeout(timer);
      srv.close(() => resolve({ state: "free" }));
    });
  });
}

export interface PortUse {
  /** who wants it: "the MDM", "SDS sds1", "the SDC's NBD server" */
  what: string;
  host: string;
  port: number;
  /** how to pick another port: "--listen HOST:PORT", "mdm.port in x.yaml" */
  change: string;
}

/** The operator error for a port that is not free, or null when it is. */
export function portProblem(use: PortUse, state: PortState): PfError | null {
  const where = `${use.host.includes(":") ? `[${use.host}]` : use.host}:${use.port}`;
  switch (state.state) {
    case "free":
      return null;
    case "in-use": {
      const by = state.holder ? ` by ${describeHolder(state.holder)}` : "";
      const again = state.holder?.pfRole ? " (is pf already running with these settings?)" : "";
      const stop = state.holder ? `stop it (kill ${state.holder.pid})` : "stop what holds it";
      return new PfError("IN_USE", `port ${where} for ${use.what} is in use${by}${again}; ${stop} or change ${use.change}`);
    }
    case "unusable":
      if (state.errno === "EADDRNOTAVAIL") {
        return new PfError("BAD_REQUEST", `address ${use.host} for ${use.what} is not an address of this host; fix ${use.change} (or, with a cluster file, give --host NAME of this host)`);
      }
      return new PfError("BAD_REQUEST", `cannot listen on ${where} for ${use.what}: ${state.text}; change ${use.change}`);
    default: {
      const never: never = state;
      throw new Error(`unhandled port state ${JSON.stringify(never)}`);
    }
  }
}

/** Throws the first port problem of `uses` (port 0, "any free port", is never a problem). */
export async function requireFreePorts(uses: PortUse[]): Promise<void> {
  for (const u of uses) {
    if (u.port === 0) continue;
    const problem = portProblem(u, await probePort(u.host, u.port));
    if (problem) throw problem;
  }
}
