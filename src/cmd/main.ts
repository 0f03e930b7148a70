// The one pf executable: `pf mdm | sds | sdc | up | scli | version`. Invoked through a link
// named `scli`, the same binary behaves as `pf scli`. Each role's flags are turned into that
// role's options object here; nothing below src/cmd parses argv.

import { defineCommand, runMain } from "citty";
import { consola } from "consola";
import { basename } from "node:path";
import { isPfError, exitStatusOf } from "../proto/errors.ts";
import { runScli } from "./scli/main.ts";
import { mdmCommand } from "./mdm.ts";
import { sdsCommand } from "./sds.ts";
import { sdcCommand } from "./sdc.ts";
import { upCommand } from "./up.ts";
import { PF_VERSION } from "./version.ts";

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

const main = defineCommand({
  meta: { name: "pf", version: PF_VERSION, description: "pf: software-defined block storage with mirrored volumes served over NBD" },
  subCommands: { mdm: mdmCommand, sds: sdsCommand, sdc: sdcCommand, up: upCommand, scli: scliCommand, version: versionCommand },
});

async function entry(): Promise<void> {
  const args = process.argv.slice(2);
  const invokedAs = basename(process.argv0 || "");
  if (invokedAs === "scli" || args[0] === "scli") {
    const code = await runScli(invokedAs === "scli" ? args : args.slice(1));
    process.exit(code);
  }
  await runMain(main);
}

entry().catch((e: unknown) => {
  if (isPfError(e)) {
    consola.error(`${e.code}: ${e.message}`);
    process.exit(exitStatusOf[e.code]);
  }
  consola.error(e);
  process.exit(1);
});
