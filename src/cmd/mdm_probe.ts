// Before an SDS or SDC makes anything (a device file, a GUID file) it asks the MDM one
// side-effect-free question with its cluster secret: a GET of a path the cluster API does not
// have. The cluster API checks the secret before routing, so the answer tells all three things
// apart: no answer (MDM down: wait, it may be starting), a certificate that does not verify
// (final), 401 (wrong secret, final) or 404 (reachable, certificate and secret good).

import { consola } from "consola";
import { z } from "zod";
import { PfError, isPfError } from "../proto/errors.ts";
import { MdmTlsError, clusterRequest, type MdmEndpoint } from "../proto/mdm_http.ts";

const PROBE_PATH = "/pf-probe"; // under CLUSTER_API_PREFIX; no route, so 404 after the secret check
const PROBE_TIMEOUT_MS = 3000;
const RETRY_MS = 500;

const seconds = (ms: number) => `${+(ms / 1000).toFixed(1)} s`;

export type MdmProbe =
  | { kind: "ready"; latencyMs: number }
  | { kind: "unreachable"; error: PfError }
  | { kind: "certificate"; error: PfError }
  | { kind: "secret"; error: PfError };

/** One question to the MDM; never throws for the three expected answers. */
export async function probeMdm(ep: MdmEndpoint): Promise<MdmProbe> {
  const t0 = performance.now();
  try {
    await clusterRequest({ ...ep, timeoutMs: ep.timeoutMs ?? PROBE_TIMEOUT_MS }, { method: "GET", path: PROBE_PATH, schema: z.unknown() });
  } catch (e) {
    if (e instanceof MdmTlsError) return { kind: "certificate", error: e };
    if (!isPfError(e)) throw e;
    if (e.code === "UNAUTHORIZED") return { kind: "secret", error: e };
    if (e.code === "UNAVAILABLE") return { kind: "unreachable", error: e };
    if (e.code !== "NOT_FOUND") throw e;
  }
  return { kind: "ready", latencyMs: performance.now() - t0 };
}

export interface MdmWaitOptions {
  /** "pf sds sds1" */
  who: string;
  /** where the certificate and the secret came from: "--mdm-ca x.pem", "PF_CLUSTER_SECRET" */
  sources: { ca: string; secret: string };
  waitMs: number;
}

/** Wait up to waitMs for the MDM; throws the operator's error for a wrong secret or certificate at once. */
export async function waitForMdmReady(ep: MdmEndpoint, opts: MdmWaitOptions): Promise<void> {
  const deadline = Date.now() + opts.waitMs;
  for (let attempt = 0; ; attempt++) {
    const p = await probeMdm(ep);
    switch (p.kind) {
      case "ready":
        return;
      case "secret":
        throw new PfError("UNAUTHORIZED", `the MDM at ${ep.url} refused the cluster secret (${opts.sources.secret}); give the secret the MDM uses (its DATA_DIR/cluster-secret, or cluster.secret of the cluster file)`);
      case "certificate":
        throw new PfError(
          "UNAVAILABLE",
          `${p.error.message}; ${opts.sources.ca} is not the MDM's certificate: give the MDM's DATA_DIR/mdm/tls/cert.pem (or its --tls-cert) with --mdm-ca FILE or PF_MDM_CA`,
        );
      case "unreachable":
        if (Date.now() >= deadline) {
          throw new PfError("UNAVAILABLE", `${p.error.message} (waited ${seconds(opts.waitMs)}); start the MDM (pf mdm, or pf up on its host) or fix --mdm / PF_MDM`);
        }
        if (attempt === 0) consola.info(`${opts.who}: MDM ${ep.url} not reachable yet; waiting up to ${seconds(opts.waitMs)} (PF_MDM_WAIT_MS)`);
        await Bun.sleep(Math.min(RETRY_MS, Math.max(0, deadline - Date.now())));
        break;
      default: {
        const never: never = p;
        throw new Error(`unhandled probe result ${JSON.stringify(never)}`);
      }
    }
  }
}
