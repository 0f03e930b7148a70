// The HTTP edge of MDM leadership (mdm/ha/meta_store.ts), one middleware in front of every route:
// - a standby answers 421 NOT_LEADER naming the active MDM (clients move there), except for the
//   status path that says who it is and the reads the caller's predicate lets through (the ones
//   safe from the followed state, rest/standby_reads.ts), which carry APPLIED_REVISION_HEADER;
// - (clientTermCheck, on the cluster API only, after its secret check) a request carrying a
//   higher term than this MDM's (x-pf-mdm-term, sent by SDSs and SDCs) means a newer MDM leads:
//   this one steps down and answers 409 STALE_TERM;
// - after the handler: every local change not yet in the shared store is committed before the
//   answer leaves (write-ahead towards the outside world); a failed commit turns the answer into
//   the commit's error (NOT_LEADER / UNAVAILABLE / TOO_BIG), and an MDM fenced while the handler
//   ran answers 421 instead of what it computed (but for changeMdmOwnership, which resigns on
//   purpose and says so with RESIGNED_HEADER).

import type { Context, MiddlewareHandler } from "hono";
import { httpStatusOf, powerflexErrorCodeOf, PfError } from "../../proto/errors.ts";
import { MDM_TERM_HEADER } from "../../proto/mdm_term.ts";
import type { MdmMetaStore } from "../ha/meta_store.ts";
import { asPfError, errorResponse } from "./http_edge.ts";

/** set by changeMdmOwnership's handler: the MDM resigned on purpose, its answer may go out */
export const RESIGNED_HEADER = "x-pf-mdm-resigned";

/** pf extension, served by every MDM whatever its role: who am I, who leads, which term. */
export const MDM_ROLE_PATH = "/api/pf/mdmRole";

/** etcd revision the answering MDM's sqlite reflects (HA mode; on every answer of an etcd MDM) */
export const APPLIED_REVISION_HEADER = "x-pf-applied-revision";
/** "leader" or "standby": which role answered (HA mode) */
export const MDM_ROLE_HEADER = "x-pf-mdm-role";

export function notLeaderResponse(c: Context, meta: MdmMetaStore, why: string): Response {
  const leader = meta.leader();
  const message = leader ? `this MDM is a standby (${why}); the active MDM is ${leader.name} at ${leader.url}` : `this MDM is a standby (${why}); no MDM is active right now`;
  return c.json(
    {
      message,
      httpStatusCode: httpStatusOf.NOT_LEADER,
      errorCode: powerflexErrorCodeOf.NOT_LEADER,
      pfCode: "NOT_LEADER",
      leader: leader ? { id: leader.id, name: leader.name, url: leader.url } : null,
      term: meta.term(),
    },
    httpStatusOf.NOT_LEADER,
  );
}

/** Stamp an HA answer with the revision and role it was computed at. */
function stampRevision(c: Context, meta: MdmMetaStore, role: "leader" | "standby"): void {
  if (meta.kind !== "etcd") return;
  c.res.headers.set(APPLIED_REVISION_HEADER, String(meta.appliedRevision()));
  c.res.headers.set(MDM_ROLE_HEADER, role);
}

export function leaderGate(getMeta: () => MdmMetaStore, servedByStandby: (method: string, path: string) => boolean = () => false): MiddlewareHandler {
  return async (c, next) => {
    const meta = getMeta();
    if (c.req.path === MDM_ROLE_PATH) {
      await next();
      stampRevision(c, meta, meta.isLeader() ? "leader" : "standby");
      return;
    }
    if (!meta.isLeader()) {
      if (!servedByStandby(c.req.method, c.req.path)) return notLeaderResponse(c, meta, "it does not hold the leadership");
      // the revision is read before the handler: the answer reflects at least that much
      const rev = meta.appliedRevision();
      await next();
      if (meta.kind === "etcd") {
        c.res.headers.set(APPLIED_REVISION_HEADER, String(rev));
        c.res.headers.set(MDM_ROLE_HEADER, "standby");
      }
      return;
    }
    await next();
    if (meta.hasPending()) {
      try {
        await meta.commit();
      } catch (e) {
        const err = asPfError(e);
        c.res = err.code === "NOT_LEADER" ? notLeaderResponse(c, meta, "its change was not committed") : errorResponse(c, err);
        return;
      }
    }
    // an answer computed by an MDM that was fenced meanwhile must not go out (an error may)
    if (!meta.isLeader() && c.res.status < 300 && c.res.headers.get(RESIGNED_HEADER) !== "1") c.res = notLeaderResponse(c, meta, "it was fenced while answering");
    else stampRevision(c, meta, "leader");
  };
}

/** The cluster API's check of the caller's highest term (only after the cluster secret matched). */
export function clientTermCheck(getMeta: () => MdmMetaStore): MiddlewareHandler {
  return async (c, next) => {
    const meta = getMeta();
    const heard = Number(c.req.header(MDM_TERM_HEADER) ?? "0");
    const mine = meta.term();
    if (Number.isSafeInteger(heard) && heard > mine) {
      meta.sawHigherTerm(heard, `the client of ${c.req.method} ${c.req.path}`);
      // still below it (an HA MDM stepped down; a sqlite MDM jumps above it and answers)
      if (heard >= meta.term() || !meta.isLeader()) return errorResponse(c, new PfError("STALE_TERM", `this MDM's term ${mine} is older than term ${heard} the client has seen`));
    }
    await next();
  };
}
