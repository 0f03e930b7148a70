// Strict flag checking for pf's subcommands. citty accepts any flag and silently ignores the
// ones it does not know; an operator's typo (`--data-dri`) must instead stop the command before
// it creates anything, with exit status 2 and the flag named. checkFlags runs over the same
// `args` definitions citty parses with, so the two never disagree about which flags exist.
//
// Accepted forms: `--flag VALUE`, `--flag=VALUE`, boolean `--flag`, `--flag=true|false`,
// `--no-flag`; `--` ends the flags. Repeated string flags are allowed (--device).

import type { ArgDef, ArgsDef } from "citty";
import { PfError } from "../proto/errors.ts";

/** A flag mistake: exit status 2 (BAD_REQUEST), nothing run. */
export function usageError(message: string, command: string): PfError {
  return new PfError("BAD_REQUEST", `${message}; see ${command} --help`);
}

/** Throws usageError for an unknown flag, a flag without its value, a missing required flag or a stray argument. */
export function checkFlags(argsDef: ArgsDef, rawArgs: string[], command: string): void {
  const flags = new Map<string, ArgDef>();
  let positionalSlots = 0;
  for (const [name, def] of Object.entries(argsDef)) {
    if (def.type === "positional") positionalSlots++;
    else flags.set(name, def);
  }
  const seen = new Set<string>();
  const positionals: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const a = rawArgs[i]!;
    if (a === "--") {
      positionals.push(...rawArgs.slice(i + 1));
      break;
    }
    if (!a.startsWith("-") || a === "-") {
      positionals.push(a);
      continue;
    }
    if (!a.startsWith("--")) throw usageError(`unknown flag ${a}`, command);
    const eq = a.indexOf("=");
    const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    const inline = eq >= 0 ? a.slice(eq + 1) : undefined;
    const def = flags.get(name);
    if (def === undefined) {
      const negated = name.startsWith("no-") ? flags.get(name.slice(3)) : undefined;
      if (negated?.type === "boolean" && inline === undefined) {
        seen.add(name.slice(3));
        continue;
      }
      throw usageError(`unknown flag --${name}${suggestion(name, [...flags.keys()])}`, command);
    }
    seen.add(name);
    if (def.type === "boolean") {
      if (inline !== undefined && inline !== "true" && inline !== "false") throw usageError(`--${name} takes no value (or =true / =false), got ${JSON.stringify(inline)}`, command);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = rawArgs[i + 1];
      if (next === undefined || next.startsWith("--")) throw usageError(`--${name} needs a value${def.valueHint ? ` (${def.valueHint})` : ""}`, command);
      value = next;
      i++;
    }
    if (value === "") throw usageError(`--${name} needs a value, got an empty one`, command);
  }
  if (positionals.length > positionalSlots) {
    throw usageError(`unexpected argument ${JSON.stringify(positionals[positionalSlots])}`, command);
  }
  for (const [name, def] of flags) {
    if (def.required && def.default === undefined && !seen.has(name)) {
      throw usageError(`missing --${name}${def.description ? ` (${lowerFirst(def.description)})` : ""}`, command);
    }
  }
}

function lowerFirst(s: string): string {
  return s.length > 0 && /[A-Z][a-z]/.test(s.slice(0, 2)) ? s[0]!.toLowerCase() + s.slice(1) : s;
}

/** "; did you mean --data-dir?" for a near miss (edit distance <= 2 or a shared prefix). */
function suggestion(given: string, known: string[]): string {
  let best: { name: string; distance: number } | null = null;
  for (const k of known) {
    const d = k.startsWith(given) || given.startsWith(k) ? 1 : editDistance(given, k);
    if (d <= 2 && (best === null || d < best.distance)) best = { name: k, distance: d };
  }
  return best ? ` (did you mean --${best.name}?)` : "";
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    prev = row;
  }
  return prev[b.length]!;
}
