// Cluster YAML fuzz cases for src/proto/cluster_config.ts (in process): a valid cluster file
// (configs/*.yaml) with one field replaced, dropped or added at a random path, written back as
// YAML; text-level damage (a cut, inserted bytes, tabs, duplicate keys, tags, anchors and alias
// bombs, deep nesting); and random text. Pass: parseClusterConfig returns a config, or throws a
// PfError BAD_REQUEST whose message names the file, within a time bound; never another
// exception (which `pf up` would report as an internal error with a stack).

import fc from "fast-check";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { parseClusterConfig } from "../../src/proto/cluster_config.ts";
import { isPfError } from "../../src/proto/errors.ts";
import type { Target } from "./fuzz_run.ts";

export interface YamlCase {
  note: string;
  text: string;
}

const CONFIGS = ["one-host.yaml", "three-hosts.yaml"].map((f) => {
  try {
    return readFileSync(join(import.meta.dir, "../../configs", f), "utf8");
  } catch {
    return "";
  }
}).filter((t) => t.length > 0);

const weird = fc.oneof(
  fc.constantFrom<unknown>(null, true, false, 0, -1, 65536, 1e308, 2 ** 53 + 1, 0.5, "", "x".repeat(300), "1GiB", "1.5GiB", "-1GiB", "1e400B", "9999999PiB", "0", "5s", "-5s", "ms", "nan", "pd1/sp1", "pd1/", "/", "127.0.0.1:99999", ":", "[::1]:10809", "::", [], {}, [[[]]], { a: 1 }),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 30 }),
  fc.jsonValue({ maxDepth: 2 }),
);

type Json = unknown;

/** every path of a JSON tree (objects and arrays) */
function paths(v: Json, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...at, i], out));
  else if (v !== null && typeof v === "object") for (const [k, x] of Object.entries(v)) paths(x, [...at, k], out);
  return out;
}

function setAt(root: Json, path: (string | number)[], op: "replace" | "drop" | "add", value: unknown, key: string): Json {
  const copy = structuredClone(root) as Record<string | number, unknown>;
  if (path.length === 0) return op === "replace" ? value : copy;
  let node: Record<string | number, unknown> = copy;
  for (const p of path.slice(0, -1)) node = node[p] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (op === "replace") node[last] = value;
  else if (op === "drop") {
    if (Array.isArray(node)) node.splice(Number(last), 1);
    else delete node[last];
  } else {
    const target = node[last];
    if (Array.isArray(target)) target.push(value);
    else if (target !== null && typeof target === "object") (target as Record<string, unknown>)[key] = value;
    else node[last] = value;
  }
  return copy;
}

const structured = fc
  .record({ cfg: fc.integer({ min: 0, max: Math.max(0, CONFIGS.length - 1) }), pick: fc.nat(), op: fc.constantFrom<"replace" | "drop" | "add">("replace", "replace", "drop", "add"), value: weird, key: fc.oneof(fc.constantFrom("__proto__", "constructor", "extra", "<<"), fc.string({ maxLength: 8 })) })
  .map(({ cfg, pick, op, value, key }) => {
    const doc = parse(CONFIGS[cfg]!) as Json;
    const ps = paths(doc);
    const p = ps[pick % ps.length]!;
    return { note: `field ${op} at ${p.join(".") || "(root)"}`, text: stringify(setAt(doc, p, op, value, key)) };
  });

const textDamage = fc
  .record({
    cfg: fc.integer({ min: 0, max: Math.max(0, CONFIGS.length - 1) }),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    kind: fc.constantFrom("cut", "insert", "delete", "tab", "dupkey", "tag", "anchor"),
    ins: fc.oneof(fc.constantFrom("\t", ":", "- ", "{", "[", "}", "]", "&a ", "*a", "!!binary ", "!!js/function ", "!<tag:x> ", "? ", "|", ">", "%YAML 1.1\n", "---\n", "...\n", "\u0000", "\ufeff", "\r", "#", "'", '"', "<<: *a\n", "0x", "~"), fc.string({ maxLength: 6 })),
    n: fc.integer({ min: 1, max: 20 }),
  })
  .map(({ cfg, at, kind, ins, n }) => {
    const t = CONFIGS[cfg]!;
    const i = Math.floor(at * t.length);
    switch (kind) {
      case "cut":
        return { note: `cut at ${i}`, text: t.slice(0, i) };
      case "insert":
        return { note: `insert ${JSON.stringify(ins)} at ${i}`, text: t.slice(0, i) + ins + t.slice(i) };
      case "delete":
        return { note: `delete ${n} at ${i}`, text: t.slice(0, i) + t.slice(i + n) };
      case "tab":
        return { note: `tab indent at ${i}`, text: t.slice(0, i) + t.slice(i).replace(/\n {2}/, "\n\t") };
      case "dupkey":
        return { note: "duplicate top key", text: `${t}\ncluster: { name: again }\n` };
      case "tag":
        return { note: `tag ${ins}`, text: t.replace("size: 1GiB", `size: !!${ins.replace(/\W/g, "") || "int"} 1GiB`) };
      default:
        return { note: "anchor and aliases", text: t.replace("pool: pd1/sp1", "pool: &p pd1/sp1").replaceAll("pool: pd1/sp1", "pool: *p") };
    }
  });

/** alias bombs, deep nesting, huge scalars */
const bombs = fc.oneof(
  fc.integer({ min: 2, max: 12 }).map((depth) => {
    const lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i <= depth; i++) lines.push(`a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(", ")}]`);
    lines.push(`hosts: *a${depth}`);
    return { note: `alias bomb depth ${depth}`, text: lines.join("\n") };
  }),
  fc.integer({ min: 10, max: 1_500 }).map((n) => ({ note: `nesting ${n}`, text: `hosts: ${"[".repeat(n)}${"]".repeat(n)}` })),
  fc.integer({ min: 10, max: 300 }).map((n) => ({ note: `block nesting ${n}`, text: Array.from({ length: n }, (_, i) => `${" ".repeat(i)}k${i}:`).join("\n") })),
  fc.integer({ min: 1, max: 2 }).map((k) => ({ note: `big scalar ${k * 256} KiB`, text: `cluster: { name: ${"x".repeat(k * 256 * 1024)} }\nhosts: []` })),
);

const random = fc.oneof(fc.string({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString("latin1"))).map((text) => ({ note: "random text", text }));

export const yamlCaseArb: fc.Arbitrary<YamlCase> = fc.oneof({ weight: 5, arbitrary: structured }, { weight: 4, arbitrary: textDamage }, { weight: 1, arbitrary: bombs }, { weight: 2, arbitrary: random });

/** "" if parseClusterConfig behaved, else what it did. */
export function checkYaml(c: YamlCase, maxMs = 2000): string {
  const t0 = performance.now();
  try {
    parseClusterConfig(c.text, "fuzz.yaml");
  } catch (e) {
    if (!isPfError(e)) return `internal: ${c.note}: ${(e as Error)?.name}: ${(e as Error)?.message?.slice(0, 200)}`;
    if (e.code !== "BAD_REQUEST") return `internal: ${c.note}: PfError ${e.code}, expected BAD_REQUEST`;
    if (!e.message.startsWith("fuzz.yaml")) return `internal: ${c.note}: error does not name the file: ${e.message.slice(0, 200)}`;
  }
  const ms = performance.now() - t0;
  return ms > maxMs ? `hang: ${c.note}: took ${ms.toFixed(0)} ms` : "";
}

export function yamlTarget(): Target<YamlCase> {
  return { name: "yaml", arb: yamlCaseArb, toJson: (c) => (c.text.length > 4096 ? { note: c.note, regenerate: true } : c), exec: async (c) => checkYaml(c) };
}
