// argv -> one command and its flag values, checked against flag_specs and command_specs.
// Invariants: every problem is a usageError naming the flag (exit 2) raised before any request;
// a value flag takes the next token only if it is not itself a --flag (use --flag=VALUE for
// values that start with "--"); no flag may be given twice; positional words are refused.

import type { IoPriorityPolicy } from "../../proto/cluster_api.ts";
import { z } from "zod";
import { objectName } from "../../proto/powerflex_api.ts";
import { Limits, Units } from "../../proto/limits.ts";
import { ID_PATTERN } from "../../proto/ids.ts";
import { COMMANDS } from "./command_specs.ts";
import { COMMON_FLAGS, FLAGS, isCommandName, isFlagName, type CommandName, type FlagName, type FlagSpec } from "./flag_specs.ts";
import { usageError } from "./scli_errors.ts";

export const MAX_SIZE_GB = Limits.maxVolumeBytes / Units.GiB;

export type Parsed =
  | { kind: "general_help" }
  | { kind: "command_help"; command: CommandName }
  | { kind: "run"; command: CommandName; args: ScliArgs };

/** The checked flag values of one command. */
export class ScliArgs {
  constructor(private readonly values: ReadonlyMap<FlagName, string | true>) {}

  has(flag: FlagName): boolean {
    return this.values.has(flag);
  }

  /** The value of a value flag, or undefined when absent. */
  str(flag: FlagName): string | undefined {
    const v = this.values.get(flag);
    return typeof v === "string" ? v : undefined;
  }

  /** The value of a flag that argv_parse already made required. */
  need(flag: FlagName): string {
    const v = this.str(flag);
    if (v === undefined) throw usageError(`--${flag} is required`);
    return v;
  }

  /** --size_gb as a number (validated at parse time). */
  sizeGb(): number {
    return Number(this.need("size_gb"));
  }
}

export function parseArgv(argv: readonly string[]): Parsed {
  const values = tokenize(argv);
  const commands = [...values.keys()].filter(isCommandName);
  if (commands.length > 1) {
    throw usageError(`${commands.map((c) => `--${c}`).join(" and ")} cannot be used together: give one command`);
  }
  const command = commands[0];
  if (command === undefined) {
    if (values.has("help")) return { kind: "general_help" };
    throw usageError("no command given (see scli --help)");
  }
  checkAccepted(command, values);
  if (values.has("help")) return { kind: "command_help", command };
  checkCombination(command, values);
  for (const [flag, v] of values) if (typeof v === "string") checkValue(flag, v);
  return { kind: "run", command, args: new ScliArgs(values) };
}

function tokenize(argv: readonly string[]): Map<FlagName, string | true> {
  const values = new Map<FlagName, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (!token.startsWith("--") || token === "--") throw usageError(`unexpected argument ${JSON.stringify(token)}: flags look like --name [VALUE]`);
    const eq = token.indexOf("=");
    const rawName = token.slice(2, eq < 0 ? undefined : eq);
    const inline = eq < 0 ? undefined : token.slice(eq + 1);
    const flag = knownFlag(rawName);
    if (values.has(flag)) throw usageError(`--${flag} given twice`);
    if (FLAGS[flag].kind !== "value") {
      if (inline !== undefined) throw usageError(`--${flag} takes no value`);
      values.set(flag, true);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = argv[i + 1];
      if (next !== undefined && !next.startsWith("--")) {
        value = next;
        i++;
      }
    }
    if (value === undefined || value.length === 0) throw usageError(`--${flag} needs a value (${placeholder(flag)})`);
    values.set(flag, value);
  }
  return values;
}

function knownFlag(rawName: string): FlagName {
  if (isFlagName(rawName)) return rawName;
  const underscored = rawName.toLowerCase().replaceAll("-", "_");
  const hint = isFlagName(underscored) ? `; did you mean --${underscored}?` : " (see scli --help)";
  throw usageError(`unknown flag --${rawName}${hint}`);
}

function placeholder(flag: FlagName): string {
  const spec: FlagSpec = FLAGS[flag];
  return spec.arg ?? "VALUE";
}

function checkAccepted(command: CommandName, values: ReadonlyMap<FlagName, string | true>): void {
  const accepted = new Set<FlagName>([command, ...COMMON_FLAGS, ...COMMANDS[command].flags]);
  for (const flag of values.keys()) {
    if (!accepted.has(flag)) throw usageError(`--${flag} is not a flag of --${command} (see scli --${command} --help)`);
  }
}

function checkCombination(command: CommandName, values: ReadonlyMap<FlagName, string | true>): void {
  const spec = COMMANDS[command];
  const given = (group: readonly FlagName[]) => group.filter((f) => values.has(f));
  const list = (group: readonly FlagName[]) => group.map((f) => `--${f}`).join(" | ");
  for (const group of spec.exclusive) {
    const g = given(group);
    if (g.length > 1) throw usageError(`${list(g).replaceAll(" | ", " and ")} cannot be used together with --${command}`);
  }
  for (const req of spec.required) {
    if (typeof req === "string") {
      if (!values.has(req)) throw usageError(`--${command} needs --${req}`);
    } else if (given(req).length === 0) {
      throw usageError(`--${command} needs one of ${list(req)}`);
    }
  }
  for (const n of spec.needs) {
    if (values.has(n.flag) && given(n.oneOf).length === 0) throw usageError(`--${n.flag} needs one of ${list(n.oneOf)} (${n.why})`);
  }
  if (command === "remove_volume" && !values.has("i_am_sure")) {
    throw usageError("--remove_volume destroys the volume's data: add --i_am_sure to confirm");
  }
  if (command === "remove_consistency_group_snapshots" && !values.has("i_am_sure")) {
    throw usageError("--remove_consistency_group_snapshots destroys the snapshots' data: add --i_am_sure to confirm");
  }
  if (command === "overwrite_volume_content" && !values.has("i_am_sure")) {
    throw usageError("--overwrite_volume_content replaces the volume's data: add --i_am_sure to confirm");
  }
  // a comma list of volumes makes one group: only --snapshot_volume takes one
  for (const f of LIST_FLAGS) {
    const v = values.get(f);
    if (typeof v === "string" && v.includes(",") && command !== "snapshot_volume") throw usageError(`--${f} takes one value with --${command} (a list only with --snapshot_volume)`);
  }
}

const SIZE_GB = /^[1-9]\d{0,15}$/;
const ACCESS_MODES = ["ReadWrite", "ReadOnly"] as const;
const MEDIA_TYPES = ["HDD", "SSD"] as const;

/** flags that --snapshot_volume takes as comma lists */
const LIST_FLAGS: readonly FlagName[] = ["volume_id", "volume_name", "snapshot_name"];
const COUNT = /^\d{1,10}$/;

function checkValue(flag: FlagName, value: string): void {
  if (LIST_FLAGS.includes(flag) && value.includes(",")) {
    for (const one of value.split(",")) checkValue(flag, one);
    return;
  }
  if (flag === "limit_iops" || flag === "limit_bandwidth_kbps" || flag === "limit_bandwidth_in_mbps") {
    if (!COUNT.test(value)) throw usageError(`--${flag} must be a whole number (0 = unlimited), got ${JSON.stringify(value)}`);
    return;
  }
  if (flag.endsWith("_id")) {
    if (!ID_PATTERN.test(value)) throw usageError(`--${flag} must be a 16-hex-digit id, got ${JSON.stringify(value)}`);
    return;
  }
  if (flag.endsWith("_name")) {
    checkName(flag, value);
    return;
  }
  switch (flag) {
    case "size_gb":
      if (!SIZE_GB.test(value) || Number(value) > MAX_SIZE_GB) {
        throw usageError(`--size_gb must be a whole number of GB from 1 to ${MAX_SIZE_GB}, got ${JSON.stringify(value)}`);
      }
      return;
    case "access_mode":
      accessModeOf(value);
      return;
    case "capacity_alert_high_threshold":
    case "capacity_alert_critical_threshold":
      if (!/^\d{1,3}$/.test(value) || Number(value) < 1 || Number(value) > 100) {
        throw usageError(`--${flag} must be a whole percent from 1 to 100, got ${JSON.stringify(value)}`);
      }
      return;
    case "policy":
      ioPolicyOf(value);
      return;
    case "concurrent_ios_per_device":
      if (!/^\d{1,2}$/.test(value) || Number(value) < 1 || Number(value) > Limits.maxCopyIosPerDevice) {
        throw usageError(`--concurrent_ios_per_device must be a whole number from 1 to ${Limits.maxCopyIosPerDevice}, got ${JSON.stringify(value)}`);
      }
      return;
    case "bw_limit_per_device_kb":
      if (!/^\d{1,10}$/.test(value)) throw usageError(`--bw_limit_per_device_kb must be a whole number of KB/s (0 = none), got ${JSON.stringify(value)}`);
      return;
    case "write_cache":
      if (value !== "writeBack" && value !== "writeThrough") throw usageError(`--write_cache must be writeBack or writeThrough, got ${JSON.stringify(value)}`);
      return;
    case "media_type":
      if (!(MEDIA_TYPES as readonly string[]).includes(value.toUpperCase())) {
        throw usageError(`--media_type must be ${MEDIA_TYPES.join(" or ")}, got ${JSON.stringify(value)}`);
      }
      return;
    default:
      if (value.length > 4096) throw usageError(`--${flag} is longer than 4096 characters`);
  }
}

function checkName(flag: FlagName, value: string): void {
  const r = objectName.safeParse(value);
  if (!r.success) throw usageError(`--${flag} ${JSON.stringify(value)}: ${z.prettifyError(r.error).replace(/^✖\s*/, "").split("\n")[0]}`);
}

/** --access_mode value -> REST accessMode; also accepts scli's READ_WRITE / read_only spellings. */
export function accessModeOf(value: string): (typeof ACCESS_MODES)[number] {
  const key = value.toLowerCase().replaceAll("_", "");
  const mode = ACCESS_MODES.find((m) => m.toLowerCase() === key);
  if (!mode) throw usageError(`--access_mode must be ReadWrite or ReadOnly, got ${JSON.stringify(value)}`);
  return mode;
}

const IO_POLICY_SPELLINGS: Record<string, IoPriorityPolicy> = {
  unlimited: "unlimited",
  limitnumofconcurrentios: "limitNumOfConcurrentIos",
  limitconcurrentio: "limitNumOfConcurrentIos",
  favorappios: "favorAppIos",
  favorapplicationio: "favorAppIos",
  dynamicbwthrottling: "dynamicBwThrottling",
  dynamicbandwidththrottling: "dynamicBwThrottling",
};

/** --policy value -> REST policy name; takes the REST names and scli's snake_case spellings, any case. */
export function ioPolicyOf(value: string): IoPriorityPolicy {
  const p = IO_POLICY_SPELLINGS[value.toLowerCase().replaceAll("_", "")];
  if (p === undefined) {
    throw usageError(`--policy must be unlimited, limit_concurrent_io, favor_application_io or dynamic_bandwidth_throttling (or limitNumOfConcurrentIos, favorAppIos, dynamicBwThrottling), got ${JSON.stringify(value)}`);
  }
  return p;
}
