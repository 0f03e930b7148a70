// scli, the operator CLI in PowerFlex flag style, over the MDM REST API. runScli parses argv,
// runs one command and prints its result (text for people, --json for scripts); it returns the
// exit status and never exits the process. Errors print one line on stderr:
// "Error: MDM failed command.  Status: <text>" for what the MDM refused, "Error: <text>" for
// what scli found itself or an MDM that never answered (unreachable, certificate mismatch);
// the status is exitStatusOf[code] (2 bad flags, 3 not logged in, 6 unreachable, 7 not found…).

import { consola } from "consola";
import { exitStatusOf, isPfError, type PfError } from "../../proto/errors.ts";
import { parseArgv } from "./argv_parse.ts";
import { addFaultSet, addProtectionDomain, addStoragePool, queryProtectionDomain, queryStoragePool } from "./cmd_topology.ts";
import { queryAllSdc, queryAllSds, querySds } from "./cmd_members.ts";
import { login, logout } from "./cmd_session.ts";
import { queryRebuild, removeSds } from "./cmd_recovery.ts";
import { queryAlerts, setCapacityAlertThresholds } from "./cmd_alerts.ts";
import { addStandbyMdm, queryAll, queryCluster, removeStandbyMdm, switchMdmOwnership } from "./cmd_system.ts";
import { setStoragePoolWriteCache } from "./cmd_write_cache.ts";
import {
  addSdsDevice,
  modifySparePolicy,
  removeFaultSet,
  removeProtectionDomain,
  removeSdc,
  removeSdsDevice,
  removeStoragePool,
  renameFaultSet,
  renameProtectionDomain,
  renameSdc,
  renameSds,
  renameStoragePool,
} from "./cmd_objects.ts";
import { setRebalanceIoPriorityPolicy, setRebuildIoPriorityPolicy } from "./cmd_io_priority.ts";

import { issueNbdClientCertificate, queryNbdCa, queryNbdClientCertificates, revokeNbdClientCertificate } from "./cmd_nbd_certs.ts";
import { addUser, deleteUser, modifyUser, queryAuditLog, queryUser, queryUsers, resetPassword, setPassword, verifyAuditLog } from "./cmd_users.ts";
import {
  addVolume,
  mapVolumeToSdc,
  modifyVolumeCapacity,
  queryAllVolumes,
  queryVolume, checkVolumeConsistency,
  removeVolume,
  renameVolume,
  unmapVolumeFromSdc,
} from "./cmd_volume.ts";
import { overwriteVolumeContent, queryVtree, removeConsistencyGroupSnapshots, setSdcVolumeLimit, snapshotVolume } from "./cmd_snapshot.ts";
import type { CommandContext, Handler } from "./command_context.ts";
import type { CommandName } from "./flag_specs.ts";
import { commandHelp, generalHelp } from "./help_text.ts";
import { mdmTargetOf } from "./mdm_target.ts";
import { MdmRestClient, notLoggedIn } from "./rest_client.ts";
import { ScliError } from "./scli_errors.ts";
import { SessionStore, sessionDirOf } from "./session_store.ts";

export interface ScliIo {
  stdout(s: string): void;
  stderr(s: string): void;
  env?: Record<string, string | undefined>;
  /** stdout is a terminal (--watch draws a bar in place); default false */
  isTty?: boolean;
  /** wait between --watch refreshes (tests pass a fake) */
  sleep?: (ms: number) => Promise<void>;
}

const HANDLERS: Record<CommandName, Handler> = {
  login,
  logout,
  add_protection_domain: addProtectionDomain,
  add_storage_pool: addStoragePool,
  add_fault_set: addFaultSet,
  add_volume: addVolume,
  remove_volume: removeVolume,
  map_volume_to_sdc: mapVolumeToSdc,
  unmap_volume_from_sdc: unmapVolumeFromSdc,
  modify_volume_capacity: modifyVolumeCapacity,
  rename_volume: renameVolume,
  query_all: queryAll,
  query_all_volumes: queryAllVolumes,
  query_volume: queryVolume,
  check_volume_consistency: checkVolumeConsistency,
  query_all_sds: queryAllSds,
  query_sds: querySds,
  query_all_sdc: queryAllSdc,
  query_storage_pool: queryStoragePool,
  query_protection_domain: queryProtectionDomain,
  query_cluster: queryCluster,
  switch_mdm_ownership: switchMdmOwnership,
  add_standby_mdm: addStandbyMdm,
  remove_standby_mdm: removeStandbyMdm,
  query_rebuild: queryRebuild,
  remove_sds: removeSds,
  rename_sds: renameSds,
  rename_sdc: renameSdc,
  rename_storage_pool: renameStoragePool,
  rename_protection_domain: renameProtectionDomain,
  rename_fault_set: renameFaultSet,
  remove_sdc: removeSdc,
  remove_storage_pool: removeStoragePool,
  remove_protection_domain: removeProtectionDomain,
  remove_fault_set: removeFaultSet,
  add_sds_device: addSdsDevice,
  remove_sds_device: removeSdsDevice,
  modify_spare_policy: modifySparePolicy,
  query_alerts: queryAlerts,
  set_capacity_alert_thresholds: setCapacityAlertThresholds,
  snapshot_volume: snapshotVolume,
  remove_consistency_group_snapshots: removeConsistencyGroupSnapshots,
  overwrite_volume_content: overwriteVolumeContent,
  query_vtree: queryVtree,
  set_sdc_volume_limit: setSdcVolumeLimit,
  set_storage_pool_write_cache: setStoragePoolWriteCache,
  set_rebuild_io_priority_policy: setRebuildIoPriorityPolicy,
  set_rebalance_io_priority_policy: setRebalanceIoPriorityPolicy,
  add_user: addUser,
  delete_user: deleteUser,
  modify_user: modifyUser,
  query_users: queryUsers,
  query_user: queryUser,
  set_password: setPassword,
  reset_password: resetPassword,
  query_audit_log: queryAuditLog,
  verify_audit_log: verifyAuditLog,
  query_nbd_ca: queryNbdCa,
  issue_nbd_client_certificate: issueNbdClientCertificate,
  query_nbd_client_certificates: queryNbdClientCertificates,
  revoke_nbd_client_certificate: revokeNbdClientCertificate,
};

const processIo: ScliIo = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  isTty: process.stdout.isTTY === true,
};

export async function runScli(argv: string[], io: ScliIo = processIo): Promise<number> {
  const env = io.env ?? process.env;
  try {
    const parsed = parseArgv(argv);
    switch (parsed.kind) {
      case "general_help":
        io.stdout(generalHelp());
        return 0;
      case "command_help":
        io.stdout(commandHelp(parsed.command));
        return 0;
      case "run":
        break;
      default: {
        const never: never = parsed;
        throw new Error(`unhandled parse result ${JSON.stringify(never)}`);
      }
    }
    const target = mdmTargetOf(parsed.args, env);
    const sessions = new SessionStore(sessionDirOf(env));
    const ctx: CommandContext = {
      args: parsed.args,
      live: { isTty: io.isTty ?? false, write: (s) => io.stdout(s), sleep: io.sleep ?? ((ms) => Bun.sleep(ms)) },
      target,
      sessions,
      nowMs: () => Date.now(),
      client() {
        const s = sessions.get(target.url);
        if (!s) throw notLoggedIn(target.url, "no session");
        return new MdmRestClient({ url: target.url, caPem: target.caPem, token: s.token });
      },
    };
    const out = await HANDLERS[parsed.command](ctx);
    io.stdout(parsed.args.has("json") ? `${JSON.stringify(out.json, null, 2)}\n` : `${out.text.join("\n")}\n`);
    return 0;
  } catch (e) {
    io.stderr(`${errorLine(e)}\n`);
    return isPfError(e) ? exitStatusOf[e.code] : 1;
  }
}

function errorLine(e: unknown): string {
  const oneLine = (s: string) => s.replace(/\s*\n\s*/g, " ").trim();
  if (e instanceof ScliError) return `Error: ${oneLine(e.message)}`;
  if (isPfError(e) && isTransportFailure(e)) {
    const hint = /certificate|self.signed|unable to verify|SSL|TLS/i.test(e.message) ? " (is --mdm_ca / PF_MDM_CA the MDM's certificate?)" : "";
    return `Error: ${oneLine(e.message)}${hint}`;
  }
  if (isPfError(e)) return `Error: MDM failed command.  Status: ${oneLine(e.message)}`;
  consola.debug(e);
  return `Error: internal error in scli: ${oneLine(e instanceof Error ? e.message : String(e))}`;
}

/** mdmRequest's own "MDM <url> unreachable: …" (no answer at all), as opposed to an MDM's 503 answer. */
function isTransportFailure(e: PfError): boolean {
  return e.code === "UNAVAILABLE" && /^MDM \S+ unreachable: /.test(e.message);
}
