// Who listens on a TCP port of this host: /proc/net/tcp and tcp6 give the listening socket's
// inode, /proc/PID/fd links name the process holding it, /proc/PID/cmdline what it is. Used to
// say "in use by pf mdm (pid 4242)" instead of a bare EADDRINUSE, and by `pf doctor` to tell a
// port held by the pf role that should hold it from one taken by something else.
// Best effort: a process in another network namespace or hidden by /proc permissions is not
// found (the caller then says "holder unknown").

import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import { basename } from "node:path";

const TCP_LISTEN = "0A"; // st column of /proc/net/tcp

export interface PortHolder {
  pid: number;
  /** argv of the holding process */
  argv: string[];
  /** "mdm", "sds", "sdc", "up" when the holder is a pf process; null otherwise */
  pfRole: string | null;
  /** the --name of a pf sds / sdc */
  pfName: string | null;
}

/** "pf sds sds1 (pid 42)" / "nginx (pid 7)" */
export function describeHolder(h: PortHolder): string {
  if (h.pfRole !== null) return `pf ${h.pfRole}${h.pfName ? ` ${h.pfName}` : ""} (pid ${h.pid})`;
  return `${basename(h.argv[0] ?? "?")} (pid ${h.pid})`;
}

/** Inodes of sockets listening on `port` (any address, IPv4 or IPv6). */
function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue; // no IPv6 (or no /proc): nothing listens there
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      const local = cols[1];
      if (local === undefined || cols[3] !== TCP_LISTEN) continue;
      const portHex = local.slice(local.lastIndexOf(":") + 1);
      if (Number.parseInt(portHex, 16) === port && cols[9] !== undefined) inodes.add(cols[9]);
    }
  }
  return inodes;
}

/** The process listening on `port`, or null when none is visible. */
export function portHolder(port: number): PortHolder | null {
  const inodes = listeningInodes(port);
  if (inodes.size === 0) return null;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue; // process gone or not ours to look at
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${entry}/fd/${fd}`);
      } catch {
        continue; // fd closed while we looked
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m && inodes.has(m[1]!)) return holderOf(Number(entry));
    }
  }
  return null;
}

function holderOf(pid: number): PortHolder {
  let argv: string[] = [];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((a) => a.length > 0);
  } catch {
    argv = [];
  }
  const role = pfRoleOf(argv);
  return { pid, argv, pfRole: role?.role ?? null, pfName: role?.name ?? null };
}

const PF_ROLES = new Set(["mdm", "sds", "sdc", "up"]);

/** pf's own processes: the compiled binary (named pf, or this executable) or bun running src/cmd/main.ts. */
function pfRoleOf(argv: string[]): { role: string; name: string | null } | null {
  // an etcd member pf up runs (mdm.etcd.embedded) is named after its host
  if (argv[0] !== undefined && basename(argv[0]) === "etcd") {
    const at = argv.indexOf("--name");
    return { role: "etcd", name: at > 0 ? (argv[at + 1] ?? null) : null };
  }
  let i: number;
  if (argv[0] !== undefined && (basename(argv[0]) === "pf" || argv[0] === process.execPath) && PF_ROLES.has(argv[1] ?? "")) i = 1;
  else if (argv[1]?.endsWith("src/cmd/main.ts") && PF_ROLES.has(argv[2] ?? "")) i = 2;
  else return null;
  const nameAt = argv.indexOf("--name", i);
  return { role: argv[i]!, name: nameAt > 0 ? (argv[nameAt + 1] ?? null) : null };
}
