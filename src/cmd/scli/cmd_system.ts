// System-wide queries: --query_all (system info, each protection domain with its pools and
// their free capacity, SDS/volume/SDC summaries) and --query_cluster (the MDM cluster in
// PowerFlex's "Cluster: / Master MDM: / Slave MDMs: / Tie-Breakers:" layout).

import type { CommandContext, Output } from "./command_context.ts";
import type { MdmClusterObj, MdmNode, ProtectionDomainObj, SdsObj, StoragePoolObj, SystemObj, VolumeObj, SdcObj } from "./mdm_objects.ts";
import { poolStatistics } from "./cmd_topology.ts";
import { mappedSdcCount, orNA, plural, sizeText } from "./text_format.ts";
import { ScliError } from "./scli_errors.ts";

export async function queryAll(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const [systems, pds, pools, sds, sdcs, volumes] = await Promise.all([
    client.list("System"),
    client.list("ProtectionDomain"),
    client.list("StoragePool"),
    client.list("Sds"),
    client.list("Sdc"),
    client.list("Volume"),
  ]);
  const system = systems[0];
  if (!system) throw new ScliError("INTERNAL", "the MDM lists no System object");
  const available = new Map<string, number>();
  for (const p of pools) {
    const s = await poolStatistics(client, p.id);
    const kb = s?.capacityAvailableForVolumeAllocationInKb;
    if (typeof kb === "number") available.set(p.id, kb);
  }
  return {
    text: queryAllLines({ system, pds, pools, sds, sdcs, volumes, available }),
    json: { system, protectionDomains: pds, storagePools: pools, sds, sdc: sdcs, volumes },
  };
}

interface AllObjects {
  system: SystemObj;
  pds: ProtectionDomainObj[];
  pools: StoragePoolObj[];
  sds: SdsObj[];
  sdcs: SdcObj[];
  volumes: VolumeObj[];
  /** pool id -> KiB available for volume allocation, when the MDM reports it */
  available: ReadonlyMap<string, number>;
}

export function queryAllLines(o: AllObjects): string[] {
  const lines = ["System Info:", `\tProduct:  ${orNA(o.system.systemVersionName)}`, `\tID:      ${o.system.id}`, `\tName:    ${orNA(o.system.name)}`, ""];
  lines.push(`Query all returned ${plural(o.pds.length, "Protection Domain")}:`);
  for (const pd of o.pds) {
    const pools = o.pools.filter((p) => p.protectionDomainId === pd.id);
    const sdsCount = o.sds.filter((s) => s.protectionDomainId === pd.id).length;
    lines.push(`Protection Domain ${pd.id} (Name: ${pd.name}) has ${plural(pools.length, "storage pool")}, ${plural(sdsCount, "SDS node")}`);
    for (const p of pools) {
      const n = o.volumes.filter((v) => v.storagePoolId === p.id).length;
      const kb = o.available.get(p.id);
      const free = kb === undefined ? "" : ` and ${sizeText(kb)} available for volume allocation`;
      lines.push(`\tStorage Pool ${p.name} (Id: ${p.id}) has ${plural(n, "volume")}${free}`);
    }
  }
  lines.push("", "SDS Summary:", `\tTotal ${o.sds.length} SDS Nodes`);
  for (const [state, n] of countBy(o.sds, (s) => orNA(s.membershipState))) lines.push(`\t${n} SDS nodes have membership state '${state}'`);
  for (const [state, n] of countBy(o.sds, (s) => orNA(s.mdmConnectionState))) lines.push(`\t${n} SDS nodes have connection state '${state}'`);
  lines.push("", "Volumes summary:");
  for (const [type, label] of [
    ["ThickProvisioned", "thick-provisioned"],
    ["ThinProvisioned", "thin-provisioned"],
  ] as const) {
    const vols = o.volumes.filter((v) => v.volumeType === type);
    const kb = vols.reduce((a, v) => a + v.sizeInKb, 0);
    lines.push(`\t${plural(vols.length, `${label} volume`)}. Total size: ${sizeText(kb)}`);
  }
  const mapped = o.volumes.filter((v) => mappedSdcCount(v) > 0).length;
  lines.push(`\t${plural(mapped, "volume")} mapped to at least one SDC`);
  lines.push("", "SDC Summary:", `\tTotal ${o.sdcs.length} SDC nodes`);
  return lines;
}

function countBy<T>(items: readonly T[], key: (t: T) => string): Map<string, number> {
  const m = new Map<string, number>();
  for (const it of items) m.set(key(it), (m.get(key(it)) ?? 0) + 1);
  return m;
}

export async function queryCluster(ctx: CommandContext): Promise<Output> {
  const cluster = await ctx.client().queryMdmCluster();
  return { text: clusterLines(cluster), json: cluster };
}

export async function switchMdmOwnership(ctx: CommandContext): Promise<Output> {
  const id = ctx.args.str("new_master_mdm_id");
  const name = ctx.args.str("new_master_mdm_name");
  const ip = ctx.args.str("new_primary_mdm_ip");
  const to = id !== undefined ? { id: id.replace(/^0x/i, "") } : name !== undefined ? { name } : { ip: ip! };
  const r = await ctx.client().changeMdmOwnership(to);
  return {
    text: [`Successfully switched MDM ownership from ${r.previousMaster.name} to ${r.master.name} (term ${r.previousTerm} -> ${r.term})`],
    json: r,
  };
}

const MDM_ROLES: Record<string, "Manager" | "TieBreaker"> = { manager: "Manager", tb: "TieBreaker", tiebreaker: "TieBreaker" };

export async function addStandbyMdm(ctx: CommandContext): Promise<Output> {
  const list = (v: string | undefined) => v?.split(",").map((x) => x.trim()).filter((x) => x.length > 0);
  const ips = list(ctx.args.str("new_mdm_ip")) ?? [];
  if (ips.length === 0) throw new ScliError("BAD_REQUEST", "--new_mdm_ip needs at least one IP address");
  const roleFlag = (ctx.args.str("mdm_role") ?? "manager").toLowerCase();
  const role = MDM_ROLES[roleFlag];
  if (role === undefined) throw new ScliError("BAD_REQUEST", `--mdm_role ${roleFlag}: give manager or tb`);
  const portText = ctx.args.str("new_mdm_port");
  const port = portText === undefined ? undefined : Number(portText);
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) throw new ScliError("BAD_REQUEST", `--new_mdm_port ${portText}: give a port 1..65535`);
  const name = ctx.args.str("new_mdm_name");
  const r = await ctx.client().addStandbyMdm({ ips, role, managementIps: list(ctx.args.str("new_mdm_management_ip")), name, port });
  return { text: [`Successfully added a standby MDM. Object ID ${r.id}`], json: r };
}

export async function removeStandbyMdm(ctx: CommandContext): Promise<Output> {
  const id = ctx.args.str("remove_mdm_id")!;
  await ctx.client().removeStandbyMdm(id.replace(/^0x/i, ""));
  return { text: [`Successfully removed the standby MDM ${id}`], json: { id } };
}

const MODE_TEXT: Record<string, string> = { OneNode: "1_node", ThreeNodes: "3_node", FiveNodes: "5_node" };

export function clusterLines(c: MdmClusterObj): string[] {
  const slaves = c.slaves ?? [];
  const tieBreakers = c.tieBreakers ?? [];
  const nodes = (c.master ? 1 : 0) + slaves.length + tieBreakers.length;
  const replicas = (c.master ? 1 : 0) + slaves.length;
  const state = (c.clusterState ?? "N/A").replace(/^Clustered/, "");
  const mode = MODE_TEXT[c.clusterMode ?? ""] ?? orNA(c.clusterMode);
  const vips = c.virtualIps ?? [];
  const lines = [
    "Cluster:",
    `    Mode: ${mode}, State: ${state}, Active: ${c.goodNodesNum ?? "N/A"}/${nodes}, Replicas: ${c.goodReplicasNum ?? "N/A"}/${replicas}`,
    `    Virtual IP Addresses: ${vips.length === 0 ? "N/A" : vips.join(", ")}`,
  ];
  if (typeof c.term === "number") lines.splice(2, 0, `    Term: ${c.term}`);
  if (c.master) lines.push("Master MDM:", ...nodeLines(c.master, true));
  if (slaves.length > 0) lines.push("Slave MDMs:", ...slaves.flatMap((n) => nodeLines(n, true)));
  if (tieBreakers.length > 0) lines.push("Tie-Breakers:", ...tieBreakers.flatMap((n) => nodeLines(n, false)));
  const standby = c.standbyMDMs ?? [];
  if (standby.length > 0) lines.push("Standby MDMs:", ...standby.flatMap((n) => nodeLines(n, true)));
  return lines;
}

function nodeLines(n: MdmNode, withManagement: boolean): string[] {
  const id = n.id ? (n.id.startsWith("0x") ? n.id : `0x${n.id}`) : "N/A";
  const ips = (n.ips ?? []).join(", ") || "N/A";
  const mgmt = withManagement ? `, Management IP Addresses: ${(n.managementIPs ?? []).join(", ") || "N/A"}` : "";
  return [
    `    ID: ${id}${n.name ? ` Name: ${n.name}` : ""}`,
    `        IP Addresses: ${ips}${mgmt}, Port: ${n.port ?? "N/A"}`,
    `        Status: ${orNA(n.status)}, Version: ${orNA(n.versionInfo)}`,
  ];
}
