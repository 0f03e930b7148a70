// The one pf executable: `pf mdm | sds | sdc | up | doctor | scli | version`. Invoked through a
// link named `scli`, the same binary behaves as `pf scli`. Each role's flags are turned into that
// role's options object here; nothing below src/cmd parses argv.
//
// Failures leave through one door (cli_failure.ts): one line "pf <command>: <problem>" and the
// exit status of its kind; `--debug` (anywhere before `--`) or PF_DEBUG=1 adds stacks. Flags are
// checked strictly (cli_flags.ts) before a command runs; citty only parses them.

import { defineCommand, runCommand, showUsage, type ArgsDef, type CommandDef } from "citty";
import { basename } from "node:path";
import { runScli } from "./scli/main.ts";
import { mdmCommand } from "./mdm.ts";
import { sdsCommand } from "./sds.ts";
import { sdcCommand } from "./sdc.ts";
import { upCommand } from "./up.ts";
import { doctorCommand } from "./doctor.ts";
import { PF_VERSION } from "./version.ts";
import { reportFailure } from "./cli_failure.ts";
import { checkFlags, usageError } from "./cli_flags.ts";

const versionCommand = defineCommand({
  meta: { name: "version", description: "Print the pf version" },
  run() {
    process.stdout.write(`pf ${PF_VERSION} (bun ${Bun.version})\n`);
  },
});

const scliCommand = defineCommand({
  meta: { name: "scli", description: "Operator CLI (PowerFlex scli flags); try: pf scli --help" },
  // scli parses its own PowerFlex-style flags; citty only routes here.
});

// citty's CommandDef is generic in its args; the table only needs what every command has
const commands: Record<string, CommandDef<ArgsDef>> = {
  mdm: mdmCommand as CommandDef<ArgsDef>,
  sds: sdsCommand as CommandDef<ArgsDef>,
  sdc: sdcCommand as CommandDef<ArgsDef>,
  up: upCommand as CommandDef<ArgsDef>,
  doctor: doctorCommand as CommandDef<ArgsDef>,
  scli: scliCommand,
  version: versionCommand,
};

const main = defineCommand({
  meta: { name: "pf", version: PF_VERSION, description: "pf: software-defined block storage with mirrored volumes served over NBD" },
  subCommands: commands,
});

/** The prefix of the failure line: "pf", or "pf up" once the command is known. */
let failurePrefix = "pf";

/** Takes --debug off argv (before any `--`) and turns it into PF_DEBUG=1, which roles inherit. */
function takeDebugFlag(args: string[]): string[] {
  const end = args.indexOf("--");
  const head = end < 0 ? args : args.slice(0, end);
  if (!head.includes("--debug")) return args;
  process.env.PF_DEBUG = "1";
  return [...head.filter((a) => a !== "--debug"), ...(end < 0 ? [] : args.slice(end))];
}

async function entry(): Promise<void> {
  const invokedAs = basename(process.argv0 || "");
  if (invokedAs === "scli" || process.argv[2] === "scli") {
    failurePrefix = "scli";
    const code = await runScli(invokedAs === "scli" ? process.argv.slice(2) : process.argv.slice(3));
    process.exit(code);
  }
  const args = takeDebugFlag(process.argv.slice(2));
  const first = args[0];
  if (first === undefined || first === "--help" || first === "-h" || first === "help") {
    await showUsage(main);
    if (first === undefined) throw usageError(`give a command (${Object.keys(commands).join(", ")})`, "pf");
    return;
  }
  if (first === "--version" || first === "-v") {
    process.stdout.write(`${PF_VERSION}\n`);
    return;
  }
  const command = commands[first];
  if (command === undefined) {
    const what = first.startsWith("-") ? `unknown flag ${first} (flags go after the command)` : `unknown command ${JSON.stringify(first)}`;
    throw usageError(`${what}; commands: ${Object.keys(commands).join(", ")}`, "pf");
  }
  failurePrefix = `pf ${first}`;
  const rest = args.slice(1);
  if (rest.includes("--help") || rest.includes("-h")) {
    await showUsage(command, main);
    return;
  }
  checkFlags((command.args ?? {}) as ArgsDef, rest, `pf ${first}`);
  await runCommand(command, { rawArgs: rest });
}

// A failure after start-up (a server callback, a timer) ends the process the same way: one line
// for an expected failure, message and stack for a broken invariant.
process.on("uncaughtException", (e) => process.exit(reportFailure(failurePrefix, e)));
process.on("unhandledRejection", (e) => process.exit(reportFailure(failurePrefix, e)));

entry().catch((e: unknown) => process.exit(reportFailure(failurePrefix, e)));
