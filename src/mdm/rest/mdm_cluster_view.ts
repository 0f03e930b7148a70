// queryMdmCluster in PowerFlex's shape for HA mode (powerflex-reference / mdm-ha.md §1): the
// active MDM is `master`, the other MDMs are `slaves` (Managers: each holds the whole metadata in
// its sqlite), etcd members with no MDM on their host are `tieBreakers` (they vote, hold no
// repository of ours). clusterMode follows the etcd cluster size (3 -> ThreeNodes, 5 ->
// FiveNodes), goodNodesNum counts the healthy etcd members, goodReplicasNum the MDMs whose sqlite
// is caught up with the leader; `term` (pf extension) is the fencing term. In sqlite mode the
// answer is today's one-node cluster (rest_render.ts) plus the term.

import { POWERFLEX_VERSION_INFO } from "../../proto/powerflex_api.ts";
import type { MdmContext } from "../core/context.ts";
import type { ClusterView, EtcdMemberView, MdmMemberView, RegisteredMdmView } from "../ha/meta_store.ts";
import { renderSystem } from "./rest_render.ts";

type PfObject = Record<string, unknown>;

const MODE_BY_SIZE: Record<number, string> = { 1: "OneNode", 3: "ThreeNodes", 5: "FiveNodes" };

function hostOf(url: string): string {
  try {
    return new URL(url).hostname.replace(/^\[|\]$/g, "");
  } catch {
    return url;
  }
}

function portOf(url: string): number | null {
  try {
    const u = new URL(url);
    return u.port === "" ? null : Number(u.port);
  } catch {
    return null;
  }
}

function mdmNode(m: MdmMemberView): PfObject {
  const ip = hostOf(m.url);
  return {
    id: m.id,
    name: m.name,
    port: portOf(m.url),
    ips: [ip],
    managementIPs: [ip],
    role: "Manager",
    status: m.caughtUp ? "Normal" : "Degraded",
    versionInfo: POWERFLEX_VERSION_INFO,
    opensslVersion: "N/A",
    virtualInterfaces: [],
    url: m.url,
    appliedRevision: m.appliedRev,
  };
}

function tieBreakerNode(e: EtcdMemberView): PfObject {
  const ip = hostOf(e.clientUrls[0] ?? "");
  return { id: e.name, name: e.name, port: portOf(e.clientUrls[0] ?? ""), ips: [ip], managementIPs: [], role: "TieBreaker", status: e.healthy ? "Normal" : "Disconnected", versionInfo: "etcd", virtualInterfaces: [] };
}

/** A registered MDM that is not running (yet): PowerFlex's standby MDM, outside the cluster. */
function standbyNode(r: RegisteredMdmView): PfObject {
  return { id: r.id, name: r.name, port: r.port, ips: r.ips, managementIPs: r.managementIps, role: r.role, status: "Disconnected", versionInfo: POWERFLEX_VERSION_INFO, virtualInterfaces: [] };
}

/** The MDM cluster as PowerFlex shows it, from the store's view. */
export function mdmClusterOf(view: ClusterView, systemId: string, systemName: string | null): PfObject {
  const master = view.members.find((m) => m.role === "leader") ?? null;
  const slaves = view.members.filter((m) => m !== master);
  const mdmHosts = new Set(view.members.map((m) => hostOf(m.url)));
  const tieBreakers = view.etcd.filter((e) => !e.clientUrls.some((u) => mdmHosts.has(hostOf(u))));
  const goodNodes = view.etcd.filter((e) => e.healthy).length;
  const goodReplicas = view.members.filter((m) => m.caughtUp).length;
  const quorum = Math.floor(view.etcd.length / 2) + 1;
  const tbDown = tieBreakers.some((t) => !t.healthy);
  const degraded = goodNodes < view.etcd.length || goodReplicas < view.members.length || master === null;
  const clusterState = goodNodes < quorum || master === null ? "NotClustered" : degraded ? (tbDown ? "ClusteredDegradedTiebreakerDown" : "ClusteredDegraded") : "ClusteredNormal";
  return {
    id: systemId,
    name: systemName,
    clusterMode: MODE_BY_SIZE[view.etcd.length] ?? `${view.etcd.length}Nodes`,
    clusterState,
    goodNodesNum: goodNodes,
    goodReplicasNum: goodReplicas,
    master: master ? mdmNode(master) : null,
    slaves: slaves.map(mdmNode),
    tieBreakers: tieBreakers.map(tieBreakerNode),
    // registered (--add_standby_mdm) and not running: a running registered MDM is master or slave
    standbyMDMs: view.registered.filter((r) => r.runningAs === null).map(standbyNode),
    virtualIps: [],
    term: view.term,
    registeredMdms: view.registered.map((r) => ({ id: r.id, name: r.name, ips: r.ips, port: r.port, role: r.role, runningAs: r.runningAs })),
    etcdMembers: view.etcd.map((e) => ({ name: e.name, clientUrls: e.clientUrls, healthy: e.healthy, isLeader: e.isLeader })),
  };
}

/** The answer of queryMdmCluster. */
export async function renderMdmCluster(ctx: MdmContext): Promise<PfObject> {
  const sys = renderSystem(ctx);
  if (ctx.meta.kind === "sqlite") return { ...(sys.mdmCluster as PfObject), term: ctx.meta.term() };
  const view = await ctx.meta.view();
  return mdmClusterOf(view, String(sys.id), (sys.name as string | null) ?? null);
}
