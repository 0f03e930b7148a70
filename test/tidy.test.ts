// Tidy: keeps the style habits as the code grows — no `any`, no @ts-ignore, no console.log
// (logs go through consola), and imports point down: src/cmd -> roles -> src/{proto,store};
// one role folder never imports another, and proto/store import no role.
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const src = join(import.meta.dir, "..", "src");

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
}

const ROLES = ["mdm", "sds", "sdc"];
const LOWER = ["proto", "store"];

test("no any, ts-ignore or console.log in src", () => {
  const bad: string[] = [];
  for (const f of files(src)) {
    const lines = readFileSync(f, "utf8").split("\n");
    lines.forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, "");
      if (/(:\s*any\b|<any>|as any\b|any\[\])/.test(code)) bad.push(`${relative(src, f)}:${i + 1}: any`);
      if (/@ts-ignore|@ts-nocheck/.test(line)) bad.push(`${relative(src, f)}:${i + 1}: ts-ignore`);
      if (/\bconsole\.(log|error|warn|info)\(/.test(code)) bad.push(`${relative(src, f)}:${i + 1}: console`);
    });
  }
  expect(bad).toEqual([]);
});

test("imports point down the layers", () => {
  const bad: string[] = [];
  for (const f of files(src)) {
    const folder = relative(src, f).split("/")[0]!;
    for (const m of readFileSync(f, "utf8").matchAll(/from\s+"(\.[^"]+)"/g)) {
      const target = relative(src, join(f, "..", m[1]!)).split("/")[0]!;
      if (target === folder) continue;
      const ok =
        (folder === "cmd" && [...ROLES, ...LOWER].includes(target)) ||
        (ROLES.includes(folder) && LOWER.includes(target)) ||
        (folder === "store" && target === "proto") ||
        (folder === "cmd" && m[1]!.endsWith(".yaml")); // embedded default cluster file
      if (!ok) bad.push(`${relative(src, f)} imports ${m[1]}`);
    }
  }
  expect(bad).toEqual([]);
});

/** Relative .ts imports of a file (type-only imports included: they shape the design too). */
function importsOf(f: string): string[] {
  const out: string[] = [];
  for (const m of readFileSync(f, "utf8").matchAll(/(?:from|import)\s+"(\.[^"]+\.ts)"/g)) out.push(join(f, "..", m[1]!));
  return out;
}

test("no import cycles in src (modules pass the context down instead of importing up)", () => {
  const graph = new Map(files(src).map((f) => [f, importsOf(f)]));
  const state = new Map<string, "open" | "done">();
  const cycles: string[] = [];
  const path: string[] = [];
  const visit = (f: string) => {
    if (state.get(f) === "done") return;
    if (state.get(f) === "open") {
      cycles.push(path.slice(path.indexOf(f)).concat(f).map((p) => relative(src, p)).join(" -> "));
      return;
    }
    state.set(f, "open");
    path.push(f);
    for (const g of graph.get(f) ?? []) visit(g);
    path.pop();
    state.set(f, "done");
  };
  for (const f of graph.keys()) visit(f);
  expect(cycles).toEqual([]);
});

test("src/mdm keeps its rooms: no loose file at its top but the entry, the app and the secrets", () => {
  const loose = readdirSync(join(src, "mdm")).filter((n) => n.endsWith(".ts"));
  expect(loose.sort()).toEqual(["app.ts", "main.ts", "secrets.ts"]);
  const rooms = readdirSync(join(src, "mdm")).filter((n) => !n.endsWith(".ts"));
  expect(rooms.filter((r) => !MDM_ROOMS.includes(r))).toEqual([]);
});

// Rooms of src/mdm from the bottom up; a room imports only rooms below it. The one exception is
// the context record itself, which names (type-only) the runtime state every room is handed.
// ha/ (the metadata store: sqlite or etcd, leadership, fencing term) sits below core; vtree/
// (snapshot layer graphs, write fences) between topology and recovery.
const MDM_ROOMS = ["ha", "core", "topology", "vtree", "recovery", "observe", "cluster", "rest", "dashboard"];

test("rooms of src/mdm import only the rooms below them", () => {
  const bad: string[] = [];
  for (const f of files(join(src, "mdm"))) {
    const room = relative(join(src, "mdm"), f).split("/")[0]!;
    const level = MDM_ROOMS.indexOf(room);
    if (level < 0) continue; // app.ts, main.ts, secrets.ts assemble the rooms
    for (const m of readFileSync(f, "utf8").matchAll(/(import type|import|export)[^;]*?from\s+"(\.[^"]+)"/g)) {
      const target = relative(join(src, "mdm"), join(f, "..", m[2]!)).split("/")[0]!;
      const tl = MDM_ROOMS.indexOf(target);
      if (tl <= level) continue;
      if (m[1] === "import type" && relative(src, f) === "mdm/core/context.ts") continue;
      bad.push(`${relative(src, f)} (${room}) imports ${m[2]} (${target})`);
    }
  }
  expect(bad).toEqual([]);
});

/** Imports of a file that load code at run time: type-only imports and dynamic import() excluded. */
function staticImportsOf(f: string): string[] {
  const out: string[] = [];
  for (const m of readFileSync(f, "utf8").matchAll(/(?:^|\n)\s*(import|export)\s+(type\s)?[^;]*?from\s+"(\.[^"]+\.ts)"/g)) {
    if (m[2] === undefined) out.push(join(f, "..", m[3]!));
  }
  return out;
}

test("default sqlite mode loads no etcd code: nothing reachable by static imports from the entry point is etcd's", () => {
  const reached = new Set<string>();
  const walk = (f: string) => {
    if (reached.has(f)) return;
    reached.add(f);
    for (const g of staticImportsOf(f)) walk(g);
  };
  walk(join(src, "cmd", "main.ts"));
  const etcdFiles = [...reached].map((f) => relative(src, f)).filter((f) => /etcd|follower|lease_session/.test(f));
  expect(etcdFiles).toEqual([]);
  // and the HA store is really there, behind a dynamic import
  expect(readFileSync(join(src, "mdm", "main.ts"), "utf8")).toContain('await import("./ha/etcd_setup.ts")');
});
