// scli's help: `scli --help` lists every command; `scli --<command> --help` shows that
// command's usage and flags. Built from flag_specs and command_specs, so help cannot drift
// from what the parser accepts.

import { COMMANDS } from "./command_specs.ts";
import { COMMON_FLAGS, FLAGS, type CommandName, type FlagName, type FlagSpec } from "./flag_specs.ts";

const COMMAND_NAMES = Object.keys(COMMANDS) as CommandName[];

function flagLine(flag: FlagName): string {
  const spec: FlagSpec = FLAGS[flag];
  const label = spec.arg === undefined ? `--${flag}` : `--${flag} ${spec.arg}`;
  return `  ${label.padEnd(42)} ${spec.help}`;
}

export function generalHelp(): string {
  const lines = [
    "Usage: scli --<command> [flags]      (scli --<command> --help for one command)",
    "",
    "Commands:",
    ...COMMAND_NAMES.map((c) => `  --${c.padEnd(40)} ${FLAGS[c].help}`),
    "",
    "Common flags:",
    ...COMMON_FLAGS.map(flagLine),
    "",
    "The session from --login is kept in ~/.pf/scli-session.json (PF_SCLI_SESSION_DIR overrides the folder).",
    "Exit status: 0 ok, 2 bad flags, 3 not logged in, 4 conflict, 5 no space, 6 MDM unreachable, 7 not found.",
  ];
  return `${lines.join("\n")}\n`;
}

export function commandHelp(command: CommandName): string {
  const spec = COMMANDS[command];
  const lines = [`${FLAGS[command].help}.`, "", `Usage: scli ${spec.usage}`];
  if (spec.flags.length > 0) lines.push("", "Flags:", ...spec.flags.map(flagLine));
  lines.push("", "Common flags:", ...COMMON_FLAGS.map(flagLine));
  return `${lines.join("\n")}\n`;
}
