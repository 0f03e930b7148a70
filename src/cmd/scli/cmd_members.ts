// SDS and SDC queries: --query_all_sds (grouped by protection domain), --query_sds (with its
// devices), --query_all_sdc. Output follows PowerFlex's lines ("SDS ID: … State: Connected,
// Joined IP: … Port: …", "SDC ID: … Name: … IP: … State: … GUID: …").

import type { CommandContext, Output } from "./command_context.ts";
import type { DeviceObj, ProtectionDomainObj, SdcObj, SdsObj } from "./mdm_objects.ts";
import { resolveSds } from "./selectors.ts";
import { groupBy, orNA, plural, sizeText } from "./text_format.ts";

function sdsState(s: SdsObj): string {
  return `${orNA(s.mdmConnectionState)}, ${orNA(s.membershipState)}`;
}

function sdsIps(s: SdsObj): string {
  const ips = (s.ipList ?? []).map((x) => x.ip);
  return ips.length === 0 ? "N/A" : ips.join(",");
}

export async function queryAllSds(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const [pds, sds] = await Promise.all([client.list("ProtectionDomain"), client.list("Sds")]);
  return { text: allSdsLines(pds, sds), json: sds };
}

export function allSdsLines(pds: ProtectionDomainObj[], sds: SdsObj[]): string[] {
  const lines = [`Query-all-SDS returned ${sds.length} SDS nodes.`];
  const byPd = groupBy(sds, (s) => s.protectionDomainId);
  for (const pd of pds) {
    const list = byPd.get(pd.id);
    if (!list) continue;
    lines.push(`Protection Domain ${pd.id} Name: ${pd.name}`);
    for (const s of list) {
      lines.push(`SDS ID: ${s.id} Name: ${orNA(s.name)} State: ${sdsState(s)} IP: ${sdsIps(s)} Port: ${s.port ?? "N/A"} Version: ${orNA(s.softwareVersionInfo)}`);
    }
  }
  return lines;
}

export async function querySds(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const sds = await resolveSds(client, ctx.args);
  const [pd, devices, pools] = await Promise.all([client.get("ProtectionDomain", sds.protectionDomainId), client.list("Device"), client.list("StoragePool")]);
  const mine = devices.filter((d) => d.sdsId === sds.id);
  const poolName = new Map(pools.map((p) => [p.id, p.name]));
  return { text: sdsLines(sds, pd, mine, poolName), json: { ...sds, devices: mine } };
}

function sdsLines(s: SdsObj, pd: ProtectionDomainObj, devices: DeviceObj[], poolName: ReadonlyMap<string, string>): string[] {
  const lines = [
    `SDS ${s.id} Name: ${orNA(s.name)}`,
    `\tProtection Domain: ${pd.id}, Name: ${pd.name}`,
    `\tFault Set: ${orNA(s.faultSetId)}`,
    `\tState: ${sdsState(s)}, SDS state: ${orNA(s.sdsState)}`,
    `\tIP addresses: ${sdsIps(s)}, Port: ${s.port ?? "N/A"}`,
    `\tVersion: ${orNA(s.softwareVersionInfo)}`,
    `\tDevice information (total ${plural(devices.length, "device")}):`,
  ];
  devices.forEach((d, i) => {
    const cap = d.capacityLimitInKb ?? d.maxCapacityInKb;
    lines.push(`\t\t${i + 1}: Name: ${orNA(d.name)}  Path: ${orNA(d.deviceCurrentPathName)}  ID: ${d.id}`);
    lines.push(
      `\t\t\tStorage Pool: ${poolName.get(d.storagePoolId) ?? d.storagePoolId}, Capacity: ${typeof cap === "number" ? sizeText(cap) : "N/A"}, State: ${orNA(d.deviceState)}`,
    );
    if (typeof d.errorMessage === "string") lines.push(`\t\t\tError: ${d.errorMessage}`);
  });
  return lines;
}

export async function queryAllSdc(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const sdcs = await client.list("Sdc");
  return { text: allSdcLines(sdcs), json: sdcs };
}

export function allSdcLines(sdcs: SdcObj[]): string[] {
  const lines = [`Query all SDC returned ${sdcs.length} SDC nodes.`];
  for (const s of sdcs) {
    lines.push(
      `SDC ID: ${s.id} Name: ${orNA(s.name)} IP: ${orNA(s.sdcIp)} State: ${orNA(s.mdmConnectionState)} GUID: ${orNA(s.sdcGuid)} Software version: ${orNA(s.softwareVersionInfo)}`,
    );
  }
  return lines;
}
