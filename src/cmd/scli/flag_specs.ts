// Every flag scli knows, in PowerFlex spelling (--snake_case), with its kind and help text.
// Invariant: a flag not listed here is an unknown flag (exit 2, named in the message), and a
// value flag always gets a value (never the next --flag). Commands are flags too (kind "command").

export type FlagKind = "command" | "switch" | "value";

export interface FlagSpec {
  kind: FlagKind;
  help: string;
  /** placeholder of a value flag's value in help ("NAME", "GB") */
  arg?: string;
}

export const FLAGS = {
  // ---- commands ----
  login: { kind: "command", help: "Log in to the MDM and keep the session for later calls" },
  logout: { kind: "command", help: "Log out and remove the kept session" },
  add_protection_domain: { kind: "command", help: "Create a protection domain" },
  add_storage_pool: { kind: "command", help: "Create a storage pool in a protection domain" },
  add_fault_set: { kind: "command", help: "Create a fault set in a protection domain" },
  add_volume: { kind: "command", help: "Create a volume in a storage pool" },
  remove_volume: { kind: "command", help: "Remove a volume (needs --i_am_sure)" },
  map_volume_to_sdc: { kind: "command", help: "Map a volume to an SDC" },
  unmap_volume_from_sdc: { kind: "command", help: "Unmap a volume from an SDC (or from all SDCs)" },
  modify_volume_capacity: { kind: "command", help: "Grow a volume" },
  rename_volume: { kind: "command", help: "Rename a volume" },
  query_all: { kind: "command", help: "Show the system, its protection domains, pools and totals" },
  query_all_volumes: { kind: "command", help: "List every volume, grouped by protection domain and pool" },
  query_volume: { kind: "command", help: "Show one volume" },
  check_volume_consistency: { kind: "command", help: "Compare both copies of every extent of a volume (pf extension)" },
  query_all_sds: { kind: "command", help: "List every SDS" },
  query_sds: { kind: "command", help: "Show one SDS and its devices" },
  query_all_sdc: { kind: "command", help: "List every SDC" },
  query_storage_pool: { kind: "command", help: "Show one storage pool" },
  query_protection_domain: { kind: "command", help: "Show one protection domain" },
  query_cluster: { kind: "command", help: "Show the MDM cluster" },
  switch_mdm_ownership: { kind: "command", help: "Make a caught-up standby MDM the active one (the active MDM hands over and resigns)" },
  add_standby_mdm: { kind: "command", help: "Register an MDM the cluster expects (HA mode; start it with the cluster's etcd endpoints)" },
  remove_standby_mdm: { kind: "command", help: "Remove a registered or standby MDM (not the active one); a running one stops campaigning" },
  query_rebuild: { kind: "command", help: "Show a storage pool's rebuild/rebalance progress (pf extension; --watch for a live bar)" },
  remove_sds: { kind: "command", help: "Remove an SDS: moves its data to the other SDSs first, then removes it" },
  rename_sds: { kind: "command", help: "Rename an SDS" },
  rename_sdc: { kind: "command", help: "Rename an SDC" },
  rename_storage_pool: { kind: "command", help: "Rename a storage pool" },
  rename_protection_domain: { kind: "command", help: "Rename a protection domain" },
  rename_fault_set: { kind: "command", help: "Rename a fault set" },
  remove_sdc: { kind: "command", help: "Remove an SDC that has no mapped volumes (a running one joins again)" },
  remove_storage_pool: { kind: "command", help: "Remove a storage pool that has no volumes and no devices" },
  remove_protection_domain: { kind: "command", help: "Remove a protection domain that has no pools, SDSs or fault sets" },
  remove_fault_set: { kind: "command", help: "Remove a fault set that has no SDSs" },
  add_sds_device: { kind: "command", help: "Add a device (a block device, or an existing file) to a running SDS: it opens it at once and rebalance moves data onto it" },
  remove_sds_device: { kind: "command", help: "Remove a device that holds no extent copies (e.g. one its SDS no longer opens)" },
  modify_spare_policy: { kind: "command", help: "Set the share of a storage pool's raw capacity kept spare for rebuilds" },
  query_alerts: { kind: "command", help: "Show the active alerts (--all: with the cleared ones, newest first)" },
  set_capacity_alert_thresholds: { kind: "command", help: "Set a storage pool's capacity alert thresholds (percent used)" },
  snapshot_volume: { kind: "command", help: "Snapshot one volume, or a comma list of volumes as one crash-consistent group" },
  remove_consistency_group_snapshots: { kind: "command", help: "Remove every snapshot of a consistency group (needs --i_am_sure)" },
  overwrite_volume_content: { kind: "command", help: "Restore a volume in place from a snapshot of its V-Tree (needs --i_am_sure)" },
  query_vtree: { kind: "command", help: "Show a V-Tree: its base volume and snapshot tree, capacity" },
  set_sdc_volume_limit: { kind: "command", help: "Set the IOPS and bandwidth limits of one volume-to-SDC mapping (0 = unlimited)" },
  set_storage_pool_write_cache: { kind: "command", help: "Set a storage pool's write cache: writeBack or writeThrough (pf extension; live)" },
  set_rebuild_io_priority_policy: { kind: "command", help: "Set a storage pool's rebuild (and resync) I/O priority policy, per device (live)" },
  set_rebalance_io_priority_policy: { kind: "command", help: "Set a storage pool's rebalance (drain, rebalance moves) I/O priority policy, per device (live)" },
  add_user: { kind: "command", help: "Create a user with a role (a one-time password is generated unless --password is given)" },
  delete_user: { kind: "command", help: "Remove a user" },
  modify_user: { kind: "command", help: "Change a user's role" },
  query_users: { kind: "command", help: "List the users and their roles" },
  query_user: { kind: "command", help: "Show one user (without a selector: the logged-in user)" },
  set_password: { kind: "command", help: "Change the logged-in user's own password" },
  reset_password: { kind: "command", help: "Give a user a new one-time password (shown once; it must be changed at next login)" },
  query_audit_log: { kind: "command", help: "Show audit records, newest first (pf extension)" },
  verify_audit_log: { kind: "command", help: "Check the audit log's hash chain for edited or removed records (pf extension)" },
  query_nbd_ca: { kind: "command", help: "Show (or with --out, save) the cluster NBD CA certificate NBD clients trust (pf extension)" },
  issue_nbd_client_certificate: {
    kind: "command",
    help: "Make an NBD client key here and have the cluster NBD CA sign it: ca-cert.pem, client-cert.pem, client-key.pem in --out_dir (pf extension)",
  },
  query_nbd_client_certificates: { kind: "command", help: "List the NBD client certificates the cluster issued, with their state (valid, revoked, expired) (pf extension)" },
  revoke_nbd_client_certificate: {
    kind: "command",
    help: "Revoke an NBD client certificate (by serial) or every unexpired one of a name: SDCs refuse it and close its open sessions (pf extension)",
  },

  // ---- common ----
  help: { kind: "switch", help: "Show help (alone: all commands; after a command: that command)" },
  json: { kind: "switch", help: "Print machine-readable JSON instead of text" },
  mdm_ip: { kind: "value", arg: "HOST[:PORT]", help: "MDM address, default port 6611, https (or set PF_MDM=https://HOST:PORT)" },
  mdm_ca: { kind: "value", arg: "FILE", help: "MDM certificate, PEM (or set PF_MDM_CA=FILE); always verified" },

  // ---- login ----
  username: { kind: "value", arg: "USER", help: "User to log in as" },
  password: { kind: "value", arg: "PASSWORD", help: "Password of that user" },
  user_id: { kind: "value", arg: "ID", help: "User by id" },
  user_role: { kind: "value", arg: "ROLE", help: "Monitor, Configure, FrontendConfig, BackendConfig, Administrator or Security" },
  old_password: { kind: "value", arg: "PASSWORD", help: "The current password" },
  new_password: { kind: "value", arg: "PASSWORD", help: "The new password (8 to 256 characters)" },
  max_records: { kind: "value", arg: "N", help: "At most this many records (default 100, at most 10000)" },

  // ---- selectors ----
  protection_domain_id: { kind: "value", arg: "ID", help: "Protection domain by id" },
  protection_domain_name: { kind: "value", arg: "NAME", help: "Protection domain name" },
  storage_pool_id: { kind: "value", arg: "ID", help: "Storage pool by id" },
  storage_pool_name: { kind: "value", arg: "NAME", help: "Storage pool name (with a protection domain)" },
  fault_set_name: { kind: "value", arg: "NAME", help: "Fault set name (with a protection domain, except for --add_fault_set's new one)" },
  fault_set_id: { kind: "value", arg: "ID", help: "Fault set by id" },
  device_id: { kind: "value", arg: "ID", help: "Device by id" },
  device_path: { kind: "value", arg: "PATH", help: "Device by its path on the SDS (with an SDS)" },
  device_name: { kind: "value", arg: "NAME", help: "Device by name (with an SDS); with --add_sds_device, the new device's name" },
  volume_id: { kind: "value", arg: "ID", help: "Volume by id" },
  volume_name: { kind: "value", arg: "NAME", help: "Volume name" },
  source_volume_id: { kind: "value", arg: "ID", help: "Source volume (the snapshot to restore from) by id" },
  source_volume_name: { kind: "value", arg: "NAME", help: "Source volume (the snapshot to restore from) by name" },
  consistency_group_id: { kind: "value", arg: "ID", help: "Consistency group (snapshot group) id" },
  vtree_id: { kind: "value", arg: "ID", help: "V-Tree by id" },
  sds_id: { kind: "value", arg: "ID", help: "SDS by id" },
  sds_name: { kind: "value", arg: "NAME", help: "SDS by name" },
  sds_ip: { kind: "value", arg: "IP", help: "SDS by IP address" },
  sdc_id: { kind: "value", arg: "ID", help: "SDC by id" },
  sdc_name: { kind: "value", arg: "NAME", help: "SDC by name" },
  sdc_ip: { kind: "value", arg: "IP", help: "SDC by IP address" },
  sdc_guid: { kind: "value", arg: "GUID", help: "SDC by GUID" },
  new_master_mdm_id: { kind: "value", arg: "ID", help: "The standby MDM to make active, by id" },
  new_master_mdm_name: { kind: "value", arg: "NAME", help: "The standby MDM to make active, by name" },
  new_primary_mdm_ip: { kind: "value", arg: "IP", help: "The standby MDM to make active, by IP address" },
  new_mdm_ip: { kind: "value", arg: "IP[,IP]", help: "IP address(es) of the MDM to add" },
  new_mdm_management_ip: { kind: "value", arg: "IP[,IP]", help: "Management IP address(es) of the MDM to add (default: its IPs)" },
  new_mdm_name: { kind: "value", arg: "NAME", help: "Name of the MDM to add (default mdm-IP)" },
  new_mdm_port: { kind: "value", arg: "PORT", help: "Port of the MDM to add (omitted: it matches an MDM on every port of its IPs)" },
  mdm_role: { kind: "value", arg: "manager|tb", help: "Role of the MDM to add: manager (holds the metadata) or tb (tie-breaker)" },
  remove_mdm_id: { kind: "value", arg: "ID", help: "The MDM to remove, by id" },

  // ---- NBD certificates ----
  name: { kind: "value", arg: "NAME", help: "Name of the NBD client certificate (its CN is pf-nbd-client NAME)" },
  out_dir: { kind: "value", arg: "DIR", help: "Directory for ca-cert.pem, client-cert.pem, client-key.pem (libnbd/qemu layout)" },
  out: { kind: "value", arg: "FILE", help: "Write the certificate to this file" },
  serial: { kind: "value", arg: "SERIAL", help: "Serial number of the NBD client certificate (hex, as --query_nbd_client_certificates shows it)" },
  reason: { kind: "value", arg: "TEXT", help: "Why the certificate is revoked (kept with the revocation)" },

  // ---- options ----
  media_type: { kind: "value", arg: "HDD|SSD", help: "Media type of the pool's devices (default HDD)" },
  size_gb: { kind: "value", arg: "GB", help: "Size in GB (1 GB = 1024^3 bytes), a whole positive number" },
  thin_provisioned: { kind: "switch", help: "Allocate space on first write" },
  thick_provisioned: { kind: "switch", help: "Reserve all space at creation (without either flag the pool default applies)" },
  new_name: { kind: "value", arg: "NAME", help: "New name of the object" },
  spare_percentage: { kind: "value", arg: "PERCENT", help: "Spare capacity, percent of the pool's raw capacity (0-99; PowerFlex's default 10)" },
  access_mode: { kind: "value", arg: "ReadWrite|ReadOnly", help: "Access of the SDC to the volume (default ReadWrite)" },
  allow_multi_map: { kind: "switch", help: "Allow the volume to be mapped to more than one SDC" },
  all_sdcs: { kind: "switch", help: "Unmap from every SDC" },
  i_am_sure: { kind: "switch", help: "Confirm a destructive command" },
  remove_with_descendant_snapshots: { kind: "switch", help: "Also remove the volume's snapshots" },
  remove_descendant_snapshots_only: { kind: "switch", help: "Remove only the volume's snapshots, keep the volume" },
  remove_entire_snapshot_tree: { kind: "switch", help: "Remove the whole V-Tree: the base volume and every snapshot" },
  snapshot_name: { kind: "value", arg: "NAME[,NAME...]", help: "Name of each snapshot, in the order of the volumes" },
  read_only: { kind: "switch", help: "Make the snapshots read-only (default: writable, a clone)" },
  limit_iops: { kind: "value", arg: "N", help: "IOPS limit: 0 (unlimited) or more than 10" },
  limit_bandwidth_kbps: { kind: "value", arg: "KBPS", help: "Bandwidth limit in KB/s: 0 (unlimited) or a multiple of 1024" },
  limit_bandwidth_in_mbps: { kind: "value", arg: "MBPS", help: "Bandwidth limit in MB/s (0 = unlimited)" },
  watch: { kind: "switch", help: "Refresh about every second until the work is done (a progress bar on a terminal)" },
  all: { kind: "switch", help: "Include the history (cleared alerts)" },
  capacity_alert_high_threshold: { kind: "value", arg: "PERCENT", help: "High threshold: an alert when the pool is this full (1-99, default 80)" },
  capacity_alert_critical_threshold: { kind: "value", arg: "PERCENT", help: "Critical threshold, above the high one (2-100, default 90)" },
  policy: {
    kind: "value",
    arg: "POLICY",
    help: "unlimited, limit_concurrent_io (limitNumOfConcurrentIos), favor_application_io (favorAppIos) or dynamic_bandwidth_throttling (dynamicBwThrottling)",
  },
  concurrent_ios_per_device: { kind: "value", arg: "N", help: "Copy IOs in flight per device under limit_concurrent_io and favor_application_io (1-20)" },
  bw_limit_per_device_kb: { kind: "value", arg: "KB", help: "Copy bandwidth per device in KB/s (0 = none; dynamic_bandwidth_throttling needs one)" },
  write_cache: {
    kind: "value",
    arg: "writeBack|writeThrough",
    help: "writeBack: acked when both copies hold the write, FLUSH/FUA make it durable; writeThrough: every write durable on both copies before its ack",
  },
} as const satisfies Record<string, FlagSpec>;

export type FlagName = keyof typeof FLAGS;
export type CommandName = { [K in FlagName]: (typeof FLAGS)[K]["kind"] extends "command" ? K : never }[FlagName];

export function isFlagName(s: string): s is FlagName {
  return Object.hasOwn(FLAGS, s);
}

export function isCommandName(s: FlagName): s is CommandName {
  return FLAGS[s].kind === "command";
}

/** Flags every command accepts. */
export const COMMON_FLAGS = ["help", "json", "mdm_ip", "mdm_ca"] as const satisfies readonly FlagName[];
