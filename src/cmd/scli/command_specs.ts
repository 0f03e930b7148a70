// What each scli command accepts: its flags, which of them are required (alone or one of a
// group), which exclude each other, and which need another. argv_parse checks argv against
// this table before any request is sent, so a bad combination costs no MDM round trip.
// Typed as Record<CommandName, …> so a command without a spec is a compile error.

import type { CommandName, FlagName } from "./flag_specs.ts";

export interface CommandSpec {
  /** flags besides COMMON_FLAGS */
  flags: readonly FlagName[];
  /** each entry: a flag that must be given, or a group of which exactly one must be given */
  required: readonly (FlagName | readonly FlagName[])[];
  /** groups of which at most one may be given */
  exclusive: readonly (readonly FlagName[])[];
  /** flag -> group of which one must also be given */
  needs: readonly { flag: FlagName; oneOf: readonly FlagName[]; why: string }[];
  /** false only for login/logout-free commands (none today besides --login itself) */
  needsSession: boolean;
  /** the usage line of `<command> --help` */
  usage: string;
}

const PD = ["protection_domain_id", "protection_domain_name"] as const;
const POOL = ["storage_pool_id", "storage_pool_name"] as const;
const VOLUME = ["volume_id", "volume_name"] as const;
const SDS = ["sds_id", "sds_name", "sds_ip"] as const;
const SDC = ["sdc_id", "sdc_name", "sdc_ip", "sdc_guid"] as const;
const SOURCE = ["source_volume_id", "source_volume_name"] as const;
const REMOVE_MODES = ["remove_with_descendant_snapshots", "remove_descendant_snapshots_only", "remove_entire_snapshot_tree"] as const;
const NEW_MASTER = ["new_master_mdm_id", "new_master_mdm_name", "new_primary_mdm_ip"] as const;
const USER = ["user_id", "username"] as const;
const POOL_NEEDS_PD = { flag: "storage_pool_name", oneOf: PD, why: "a pool name is unique only inside its protection domain" } as const;
const POOL_USAGE = "(--storage_pool_id ID | (--protection_domain_id ID | --protection_domain_name NAME) --storage_pool_name NAME)";
const FAULT_SET = ["fault_set_id", "fault_set_name"] as const;
const FAULT_SET_NEEDS_PD = { flag: "fault_set_name", oneOf: PD, why: "a fault set name is unique only inside its protection domain" } as const;
const FAULT_SET_USAGE = "(--fault_set_id ID | (--protection_domain_id ID | --protection_domain_name NAME) --fault_set_name NAME)";
const DEVICE = ["device_id", "device_path", "device_name"] as const;

const spec = (s: Partial<CommandSpec> & Pick<CommandSpec, "usage">): CommandSpec => ({
  flags: [],
  required: [],
  exclusive: [],
  needs: [],
  needsSession: true,
  ...s,
});

export const COMMANDS: Record<CommandName, CommandSpec> = {
  login: spec({
    flags: ["username", "password"],
    required: ["username", "password"],
    needsSession: false,
    usage: "--login --username USER --password PASSWORD [--mdm_ip HOST[:PORT]] [--mdm_ca FILE]",
  }),
  logout: spec({ needsSession: false, usage: "--logout [--mdm_ip HOST[:PORT]]" }),
  add_protection_domain: spec({
    flags: ["protection_domain_name"],
    required: ["protection_domain_name"],
    usage: "--add_protection_domain --protection_domain_name NAME",
  }),
  add_storage_pool: spec({
    flags: [...PD, "storage_pool_name", "media_type"],
    required: [PD, "storage_pool_name"],
    exclusive: [PD],
    usage: "--add_storage_pool (--protection_domain_id ID | --protection_domain_name NAME) --storage_pool_name NAME [--media_type HDD|SSD]",
  }),
  add_fault_set: spec({
    flags: [...PD, "fault_set_name"],
    required: [PD, "fault_set_name"],
    exclusive: [PD],
    usage: "--add_fault_set (--protection_domain_id ID | --protection_domain_name NAME) --fault_set_name NAME",
  }),
  add_volume: spec({
    flags: [...PD, ...POOL, "size_gb", "volume_name", "thin_provisioned", "thick_provisioned"],
    required: [POOL, "size_gb"],
    exclusive: [PD, POOL, ["thin_provisioned", "thick_provisioned"]],
    needs: [POOL_NEEDS_PD],
    usage:
      "--add_volume (--storage_pool_id ID | --protection_domain_name NAME --storage_pool_name NAME) --size_gb GB [--volume_name NAME] [--thin_provisioned | --thick_provisioned]",
  }),
  remove_volume: spec({
    flags: [...VOLUME, "i_am_sure", ...REMOVE_MODES],
    required: [VOLUME],
    exclusive: [VOLUME, REMOVE_MODES],
    usage:
      "--remove_volume (--volume_id ID | --volume_name NAME) [--remove_with_descendant_snapshots | --remove_descendant_snapshots_only | --remove_entire_snapshot_tree] --i_am_sure",
  }),
  snapshot_volume: spec({
    flags: [...VOLUME, "snapshot_name", "read_only"],
    required: [VOLUME],
    exclusive: [VOLUME],
    usage: "--snapshot_volume (--volume_id ID[,ID...] | --volume_name NAME[,NAME...]) [--snapshot_name NAME[,NAME...]] [--read_only]",
  }),
  remove_consistency_group_snapshots: spec({
    flags: ["consistency_group_id", "i_am_sure"],
    required: ["consistency_group_id"],
    usage: "--remove_consistency_group_snapshots --consistency_group_id ID --i_am_sure",
  }),
  overwrite_volume_content: spec({
    flags: [...VOLUME, ...SOURCE, "i_am_sure"],
    required: [VOLUME, SOURCE],
    exclusive: [VOLUME, SOURCE],
    usage: "--overwrite_volume_content (--volume_id ID | --volume_name NAME) (--source_volume_id ID | --source_volume_name NAME) --i_am_sure",
  }),
  query_vtree: spec({
    flags: ["vtree_id", ...VOLUME],
    required: [["vtree_id", ...VOLUME]],
    exclusive: [["vtree_id", ...VOLUME]],
    usage: "--query_vtree (--vtree_id ID | --volume_id ID | --volume_name NAME)",
  }),
  set_sdc_volume_limit: spec({
    flags: [...VOLUME, ...SDC, "limit_iops", "limit_bandwidth_kbps", "limit_bandwidth_in_mbps"],
    required: [VOLUME, SDC, ["limit_iops", "limit_bandwidth_kbps", "limit_bandwidth_in_mbps"]],
    exclusive: [VOLUME, SDC, ["limit_bandwidth_kbps", "limit_bandwidth_in_mbps"]],
    usage:
      "--set_sdc_volume_limit (--volume_id ID | --volume_name NAME) (--sdc_id ID | --sdc_ip IP | --sdc_guid GUID | --sdc_name NAME) [--limit_iops N] [--limit_bandwidth_kbps KBPS | --limit_bandwidth_in_mbps MBPS]",
  }),
  map_volume_to_sdc: spec({
    flags: [...VOLUME, ...SDC, "access_mode", "allow_multi_map"],
    required: [VOLUME, SDC],
    exclusive: [VOLUME, SDC],
    usage:
      "--map_volume_to_sdc (--volume_id ID | --volume_name NAME) (--sdc_id ID | --sdc_ip IP | --sdc_guid GUID | --sdc_name NAME) [--access_mode ReadWrite|ReadOnly] [--allow_multi_map]",
  }),
  unmap_volume_from_sdc: spec({
    flags: [...VOLUME, ...SDC, "all_sdcs", "i_am_sure"],
    required: [VOLUME, [...SDC, "all_sdcs"]],
    exclusive: [VOLUME, [...SDC, "all_sdcs"]],
    usage:
      "--unmap_volume_from_sdc (--volume_id ID | --volume_name NAME) (--sdc_id ID | --sdc_ip IP | --sdc_guid GUID | --sdc_name NAME | --all_sdcs) [--i_am_sure]",
  }),
  modify_volume_capacity: spec({
    flags: [...VOLUME, "size_gb"],
    required: [VOLUME, "size_gb"],
    exclusive: [VOLUME],
    usage: "--modify_volume_capacity (--volume_id ID | --volume_name NAME) --size_gb GB",
  }),
  rename_volume: spec({
    flags: [...VOLUME, "new_name"],
    required: [VOLUME, "new_name"],
    exclusive: [VOLUME],
    usage: "--rename_volume (--volume_id ID | --volume_name NAME) --new_name NAME",
  }),
  query_all: spec({ usage: "--query_all" }),
  query_all_volumes: spec({ usage: "--query_all_volumes" }),
  query_volume: spec({
    flags: [...VOLUME],
    required: [VOLUME],
    exclusive: [VOLUME],
    usage: "--query_volume (--volume_id ID | --volume_name NAME)",
  }),
  check_volume_consistency: spec({
    flags: [...VOLUME],
    required: [VOLUME],
    exclusive: [VOLUME],
    usage: "--check_volume_consistency (--volume_id ID | --volume_name NAME)",
  }),
  query_all_sds: spec({ usage: "--query_all_sds" }),
  query_sds: spec({
    flags: [...SDS],
    required: [SDS],
    exclusive: [SDS],
    usage: "--query_sds (--sds_id ID | --sds_name NAME | --sds_ip IP)",
  }),
  query_all_sdc: spec({ usage: "--query_all_sdc" }),
  query_storage_pool: spec({
    flags: [...PD, ...POOL],
    required: [POOL],
    exclusive: [PD, POOL],
    needs: [POOL_NEEDS_PD],
    usage: "--query_storage_pool (--storage_pool_id ID | (--protection_domain_id ID | --protection_domain_name NAME) --storage_pool_name NAME)",
  }),
  query_protection_domain: spec({
    flags: [...PD],
    required: [PD],
    exclusive: [PD],
    usage: "--query_protection_domain (--protection_domain_id ID | --protection_domain_name NAME)",
  }),
  query_cluster: spec({ usage: "--query_cluster" }),
  switch_mdm_ownership: spec({
    flags: [...NEW_MASTER],
    required: [NEW_MASTER],
    exclusive: [NEW_MASTER],
    usage: "--switch_mdm_ownership (--new_master_mdm_id ID | --new_master_mdm_name NAME | --new_primary_mdm_ip IP)",
  }),
  add_standby_mdm: spec({
    flags: ["new_mdm_ip", "new_mdm_management_ip", "new_mdm_name", "new_mdm_port", "mdm_role"],
    required: ["new_mdm_ip"],
    usage: "--add_standby_mdm --new_mdm_ip IP[,IP] [--mdm_role manager|tb] [--new_mdm_management_ip IP[,IP]] [--new_mdm_name NAME] [--new_mdm_port PORT]",
  }),
  remove_standby_mdm: spec({
    flags: ["remove_mdm_id"],
    required: ["remove_mdm_id"],
    usage: "--remove_standby_mdm --remove_mdm_id ID",
  }),
  query_rebuild: spec({
    flags: [...PD, ...POOL, "watch"],
    required: [POOL],
    exclusive: [PD, POOL],
    needs: [POOL_NEEDS_PD],
    usage: "--query_rebuild (--storage_pool_id ID | (--protection_domain_id ID | --protection_domain_name NAME) --storage_pool_name NAME) [--watch]",
  }),
  remove_sds: spec({
    flags: [...SDS],
    required: [SDS],
    exclusive: [SDS],
    usage: "--remove_sds (--sds_id ID | --sds_name NAME | --sds_ip IP)",
  }),
  rename_sds: spec({
    flags: [...SDS, "new_name"],
    required: [SDS, "new_name"],
    exclusive: [SDS],
    usage: "--rename_sds (--sds_id ID | --sds_name NAME | --sds_ip IP) --new_name NAME",
  }),
  rename_sdc: spec({
    flags: [...SDC, "new_name"],
    required: [SDC, "new_name"],
    exclusive: [SDC],
    usage: "--rename_sdc (--sdc_id ID | --sdc_name NAME | --sdc_ip IP | --sdc_guid GUID) --new_name NAME",
  }),
  rename_storage_pool: spec({
    flags: [...PD, ...POOL, "new_name"],
    required: [POOL, "new_name"],
    exclusive: [PD, POOL],
    needs: [POOL_NEEDS_PD],
    usage: `--rename_storage_pool ${POOL_USAGE} --new_name NAME`,
  }),
  rename_protection_domain: spec({
    flags: [...PD, "new_name"],
    required: [PD, "new_name"],
    exclusive: [PD],
    usage: "--rename_protection_domain (--protection_domain_id ID | --protection_domain_name NAME) --new_name NAME",
  }),
  rename_fault_set: spec({
    flags: [...PD, ...FAULT_SET, "new_name"],
    required: [FAULT_SET, "new_name"],
    exclusive: [PD, FAULT_SET],
    needs: [FAULT_SET_NEEDS_PD],
    usage: `--rename_fault_set ${FAULT_SET_USAGE} --new_name NAME`,
  }),
  remove_sdc: spec({
    flags: [...SDC],
    required: [SDC],
    exclusive: [SDC],
    usage: "--remove_sdc (--sdc_id ID | --sdc_name NAME | --sdc_ip IP | --sdc_guid GUID)",
  }),
  remove_storage_pool: spec({
    flags: [...PD, ...POOL],
    required: [POOL],
    exclusive: [PD, POOL],
    needs: [POOL_NEEDS_PD],
    usage: `--remove_storage_pool ${POOL_USAGE}`,
  }),
  remove_protection_domain: spec({
    flags: [...PD],
    required: [PD],
    exclusive: [PD],
    usage: "--remove_protection_domain (--protection_domain_id ID | --protection_domain_name NAME)",
  }),
  remove_fault_set: spec({
    flags: [...PD, ...FAULT_SET],
    required: [FAULT_SET],
    exclusive: [PD, FAULT_SET],
    needs: [FAULT_SET_NEEDS_PD],
    usage: `--remove_fault_set ${FAULT_SET_USAGE}`,
  }),
  add_sds_device: spec({
    flags: [...SDS, "device_path", "device_name", "storage_pool_id", "storage_pool_name"],
    required: [SDS, "device_path", POOL],
    exclusive: [SDS, POOL],
    usage: "--add_sds_device (--sds_id ID | --sds_name NAME | --sds_ip IP) --device_path PATH (--storage_pool_id ID | --storage_pool_name NAME) [--device_name NAME]",
  }),
  remove_sds_device: spec({
    flags: [...SDS, ...DEVICE],
    required: [DEVICE],
    exclusive: [SDS, DEVICE],
    needs: [
      { flag: "device_path", oneOf: SDS, why: "a device path is unique only on its SDS" },
      { flag: "device_name", oneOf: SDS, why: "a device name is unique only on its SDS" },
    ],
    usage: "--remove_sds_device (--device_id ID | (--sds_id ID | --sds_name NAME | --sds_ip IP) (--device_path PATH | --device_name NAME))",
  }),
  modify_spare_policy: spec({
    flags: [...PD, ...POOL, "spare_percentage"],
    required: [POOL, "spare_percentage"],
    exclusive: [PD, POOL],
    needs: [POOL_NEEDS_PD],
    usage: `--modify_spare_policy ${POOL_USAGE} --spare_percentage PERCENT`,
  }),
  query_alerts: spec({ flags: ["all"], usage: "--query_alerts [--all]" }),
  set_capacity_alert_thresholds: spec({
    flags: [...PD, ...POOL, "capacity_alert_high_threshold", "capacity_alert_critical_threshold"],
    required: [POOL, ["capacity_alert_high_threshold", "capacity_alert_critical_threshold"]],
    exclusive: [PD, POOL],
    needs: [POOL_NEEDS_PD],
    usage:
      "--set_capacity_alert_thresholds (--storage_pool_id ID | (--protection_domain_id ID | --protection_domain_name NAME) --storage_pool_name NAME) [--capacity_alert_high_threshold PERCENT] [--capacity_alert_critical_threshold PERCENT]",
  }),
  set_storage_pool_write_cache: spec({
    flags: [...PD, ...POOL, "write_cache"],
    required: [POOL, "write_cache"],
    exclusive: [PD, POOL],
    needs: [POOL_NEEDS_PD],
    usage:
      "--set_storage_pool_write_cache (--storage_pool_id ID | (--protection_domain_id ID | --protection_domain_name NAME) --storage_pool_name NAME) --write_cache writeBack|writeThrough",
  }),
  set_rebuild_io_priority_policy: spec({
    flags: [...PD, ...POOL, "policy", "concurrent_ios_per_device", "bw_limit_per_device_kb"],
    required: [POOL, ["policy", "concurrent_ios_per_device", "bw_limit_per_device_kb"]],
    exclusive: [PD, POOL],
    needs: [POOL_NEEDS_PD],
    usage:
      "--set_rebuild_io_priority_policy (--storage_pool_id ID | (--protection_domain_id ID | --protection_domain_name NAME) --storage_pool_name NAME) [--policy unlimited|limit_concurrent_io|favor_application_io|dynamic_bandwidth_throttling] [--concurrent_ios_per_device 1-20] [--bw_limit_per_device_kb KB]",
  }),
  set_rebalance_io_priority_policy: spec({
    flags: [...PD, ...POOL, "policy", "concurrent_ios_per_device", "bw_limit_per_device_kb"],
    required: [POOL, ["policy", "concurrent_ios_per_device", "bw_limit_per_device_kb"]],
    exclusive: [PD, POOL],
    needs: [POOL_NEEDS_PD],
    usage:
      "--set_rebalance_io_priority_policy (--storage_pool_id ID | (--protection_domain_id ID | --protection_domain_name NAME) --storage_pool_name NAME) [--policy unlimited|limit_concurrent_io|favor_application_io|dynamic_bandwidth_throttling] [--concurrent_ios_per_device 1-20] [--bw_limit_per_device_kb KB]",
  }),
  add_user: spec({
    flags: ["username", "user_role", "password"],
    required: ["username", "user_role"],
    usage: "--add_user --username NAME --user_role ROLE [--password PASSWORD]",
  }),
  delete_user: spec({ flags: [...USER], required: [USER], exclusive: [USER], usage: "--delete_user (--user_id ID | --username NAME)" }),
  modify_user: spec({
    flags: [...USER, "user_role"],
    required: [USER, "user_role"],
    exclusive: [USER],
    usage: "--modify_user (--user_id ID | --username NAME) --user_role ROLE",
  }),
  query_users: spec({ usage: "--query_users" }),
  query_user: spec({ flags: [...USER], exclusive: [USER], usage: "--query_user [--user_id ID | --username NAME]" }),
  set_password: spec({
    flags: ["old_password", "new_password"],
    required: ["old_password", "new_password"],
    usage: "--set_password --old_password PASSWORD --new_password PASSWORD",
  }),
  reset_password: spec({ flags: [...USER], required: [USER], exclusive: [USER], usage: "--reset_password (--user_id ID | --username NAME)" }),
  query_audit_log: spec({ flags: ["username", "max_records"], usage: "--query_audit_log [--username NAME] [--max_records N]" }),
  verify_audit_log: spec({ usage: "--verify_audit_log" }),
  query_nbd_ca: spec({ flags: ["out"], usage: "--query_nbd_ca [--out FILE]" }),
  issue_nbd_client_certificate: spec({ flags: ["name", "out_dir"], required: ["name", "out_dir"], usage: "--issue_nbd_client_certificate --name NAME --out_dir DIR" }),
  query_nbd_client_certificates: spec({ usage: "--query_nbd_client_certificates" }),
  revoke_nbd_client_certificate: spec({
    flags: ["serial", "name", "reason"],
    required: [["serial", "name"]],
    exclusive: [["serial", "name"]],
    usage: "--revoke_nbd_client_certificate (--serial SERIAL | --name NAME) [--reason TEXT]",
  }),
};
