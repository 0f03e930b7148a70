// What the cluster API hands each node of the data-plane secrets, and nothing more: an SDS gets
// its cluster-API token at join and the member keys, grant keys and revocation floors with its
// assignments; an SDC gets its token and its own node keys at join, and its node keys again with
// every map (they change on a key rotation) together with a fresh grant per mapped volume.
// An SDC with NBD TLS asks for its NBD server certificate (cluster NBD CA) after its join.
// Keeps cluster_service.ts free of key handling.
//
// Invariant: no answer to one node carries another node's key or token.

import { ne } from "drizzle-orm";
import type { DataPlaneTlsAnswer, KeyEntry, SdcMapsResponse, SdsDataPlaneKeys } from "../../proto/cluster_api.ts";
import { NodeRole, roleName, type NodeKey } from "../../proto/dataplane_auth.ts";
import { checkNodePublicKey, issueNodeCert } from "../../proto/dataplane_tls.ts";
import { PfError } from "../../proto/errors.ts";
import { keyToHex, MAX_KEPT_KIDS } from "../../proto/dataplane_keys.ts";
import type { MdmContext } from "../core/context.ts";
import { grantKeys, memberKeys, nodeKeysOf, nodeTokenOf } from "../core/dataplane_secrets.ts";
import { grantFloors } from "../topology/grant_floors.ts";
import { mintGrant } from "./grants.ts";
import { getSdc } from "../core/lookup.ts";
import { isLoopbackHost } from "../../proto/mdm_http.ts";
import { sdcTable, type SdcRow } from "../../store/mdm_schema.ts";
import { sdcMayMap } from "../topology/sdc_access.ts";
import type { IssuedNbdCert, SdcNbdCertRequest } from "../../proto/nbd_certs.ts";
import { issueNbdServerCert } from "../core/nbd_ca.ts";
import { nbdRevokedForSdcs } from "../core/nbd_client_certs.ts";

function entries(keys: readonly NodeKey[]): KeyEntry[] {
  return keys.map((k) => ({ kid: k.kid, key: keyToHex(k.key) }));
}

/**
 * Before a join changes anything: with data-plane TLS on, the node must have sent a public key
 * to certify (a node without one is an older pf or one that cannot do TLS: refused, not admitted
 * to a cluster it could not talk to).
 */
export function checkTlsJoin(ctx: MdmContext, role: NodeRole, name: string, tlsPublicKey: string | undefined): void {
  if (ctx.dataPlaneTls === undefined) return;
  if (tlsPublicKey !== undefined) {
    checkNodePublicKey(tlsPublicKey);
    return;
  }
  throw new PfError(
    "BAD_REQUEST",
    `${roleName(role)} ${name}: this MDM requires TLS on the data plane, and the join carries no TLS public key; upgrade pf on that host and start it with --data-plane-tls`,
  );
}

/** The TLS part of a join answer: off, or the CA and a certificate naming this node. */
function tlsAnswer(ctx: MdmContext, role: NodeRole, nodeId: string, tlsPublicKey: string | undefined): DataPlaneTlsAnswer {
  const a = ctx.dataPlaneTls;
  if (a === undefined) return { required: false };
  if (tlsPublicKey === undefined) throw new PfError("INTERNAL", "invariant broken: TLS join without a public key passed checkTlsJoin");
  return { required: true, caPem: a.ca.certPem, certPem: issueNodeCert(a.ca, { role, nodeId }, tlsPublicKey, new Date(ctx.clock())) };
}

export function sdsJoinSecrets(ctx: MdmContext, sdsId: string, tlsPublicKey?: string): { nodeToken: string; dataPlaneTls: DataPlaneTlsAnswer } {
  return { nodeToken: nodeTokenOf(ctx, NodeRole.SDS, sdsId), dataPlaneTls: tlsAnswer(ctx, NodeRole.SDS, sdsId, tlsPublicKey) };
}

export function sdcJoinSecrets(ctx: MdmContext, sdcId: string, tlsPublicKey?: string): { nodeToken: string; nodeKeys: KeyEntry[]; dataPlaneTls: DataPlaneTlsAnswer } {
  return { nodeToken: nodeTokenOf(ctx, NodeRole.SDC, sdcId), nodeKeys: entries(nodeKeysOf(ctx, NodeRole.SDC, sdcId)), dataPlaneTls: tlsAnswer(ctx, NodeRole.SDC, sdcId, tlsPublicKey) };
}

/** The data-plane part of an SDS's assignments. */
export function sdsDataPlane(ctx: MdmContext): SdsDataPlaneKeys {
  const keys = sdsKeyEntries(ctx);
  return { memberKeys: keys.memberKeys, grantKeys: keys.grantKeys, grantFloors: grantFloors(ctx) };
}

const sdsKeys = new WeakMap<object, { sig: string; memberKeys: KeyEntry[]; grantKeys: KeyEntry[] }>();

/**
 * Every SDS answer's member and grant keys: two HKDF derivations per kept master key and their
 * hex, ~0.35 ms of an empty delta's 0.77 ms at 1,000 SDSs (a create's delta fetches by its ~30
 * SDSs cost more than the create). Derived again only when the master key rows (kid and key)
 * or the system id differ from the last derivation's; the rows are still read every time.
 */
function sdsKeyEntries(ctx: MdmContext): { memberKeys: KeyEntry[]; grantKeys: KeyEntry[] } {
  const rows = ctx.store.sqlite.query<{ kid: number; keyHex: string }, [number]>("SELECT kid, key_hex AS keyHex FROM dataplane_key ORDER BY kid DESC LIMIT ?").all(MAX_KEPT_KIDS);
  const sig = `${ctx.systemId}|${rows.map((r) => `${r.kid}:${r.keyHex}`).join(",")}`;
  const held = sdsKeys.get(ctx.store);
  if (rows.length > 0 && held?.sig === sig) return held;
  // (no row: masterKeys makes the first one; the next answer caches it)
  const fresh = { sig, memberKeys: entries(memberKeys(ctx)), grantKeys: entries(grantKeys(ctx)) };
  if (rows.length > 0) sdsKeys.set(ctx.store, fresh);
  return fresh;
}

/**
 * An SDC's maps with its node keys and a grant per mapped volume; an SDC that restricted SDC
 * mode does not let have volumes gets none (and no grant).
 */
export function sdcMapsWithAccess(ctx: MdmContext, sdcId: string, maps: Omit<SdcMapsResponse, "nodeKeys" | "dataPlaneTls" | "nbdRevoked">): SdcMapsResponse {
  const allowed = sdcMayMap(ctx, getSdc(ctx, sdcId));
  const volumes = allowed ? maps.volumes.map((v) => ({ ...v, grant: mintGrant(ctx, sdcId, v.volumeId, v.accessMode, maps.mapVersion) })) : [];
  return { ...maps, volumes, nodeKeys: entries(nodeKeysOf(ctx, NodeRole.SDC, sdcId)), dataPlaneTls: ctx.dataPlaneTls !== undefined, nbdRevoked: nbdRevokedForSdcs(ctx) };
}

/**
 * An SDC's NBD server certificate for the hosts it names. Only an SDC that may have volumes
 * (approved, or restricted SDC mode off) gets one: an unapproved SDC serves nothing, and a
 * certificate naming hosts is worth stealing (it would let that SDC pose as another NBD server).
 * For the same reason no SDC gets a certificate naming the address another SDC joined with
 * (its --address: what that SDC's clients dial); loopback names are every host's own.
 */
/** One spelling per address: case, a trailing dot, brackets and IPv4-mapped IPv6 do not count. */
function hostKey(host: string): string {
  let h = host.trim().toLowerCase().replace(/^\[|\]$/g, "").replace(/\.$/, "");
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  if (mapped) h = mapped[1]!;
  if (h.includes(":")) {
    try {
      h = new URL(`http://[${h}]/`).hostname.replace(/^\[|\]$/g, ""); // compressed form
    } catch {
      // not an IPv6 address: keep it as written
    }
    const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(h); // ::ffff:a00:1 is 10.0.0.1
    if (hex) {
      const hi = parseInt(hex[1]!, 16);
      const lo = parseInt(hex[2]!, 16);
      h = `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
    }
  }
  return h;
}

export function sdcNbdCertificate(ctx: MdmContext, sdcId: string, req: SdcNbdCertRequest): IssuedNbdCert {
  const sdc = getSdc(ctx, sdcId);
  if (!sdcMayMap(ctx, sdc)) {
    throw new PfError("INVALID_STATE", `INITIATOR_NOT_APPROVED: SDC ${sdcId} (GUID ${sdc.guid}) is not approved; approve it (approveSdc) and it gets its NBD certificate at its next try`);
  }
  // a Disconnected SDC's address is free: a host reinstalled under a new GUID must not be locked
  // out by its old record (and a down SDC serves no NBD to pose as)
  const claimed = new Map<string, SdcRow>();
  for (const other of ctx.store.db.select().from(sdcTable).where(ne(sdcTable.id, sdcId)).all()) {
    if (!isLoopbackHost(other.host) && ctx.health.sdcState(other.id) === "Connected") claimed.set(hostKey(other.host), other);
  }
  for (const h of req.hosts) {
    const owner = claimed.get(hostKey(h));
    if (owner !== undefined) {
      throw new PfError("BAD_REQUEST", `NBD certificate for ${h} refused: that is the address SDC ${owner.id}${owner.name ? ` (${owner.name})` : ""} joined with, and a certificate naming it would let SDC ${sdcId} pose as that SDC's NBD server; give this SDC its own --address (or remove SDC ${owner.id} if this host replaced it)`);
    }
  }
  return issueNbdServerCert(ctx, sdcId, req.hosts, req.publicKeyPem);
}
