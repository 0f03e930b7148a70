// The data plane's same-host shortcut: an SDS also listens on a Unix stream socket whose path is a
// function of its TCP address (host, port), and a client on the same host that finds that socket
// speaks the very same protocol over it (handshake, frames, grants) instead of TCP loopback.
// Why: a loopback TCP hop cost a Bun sender + receiver ~820 µs CPU per MiB against ~420 µs over a
// Unix socket (same copies; no TCP segmentation, ACKs, softirq), and a 1 MiB write crosses two
// such hops inside pf (SDC -> primary, primary -> secondary) on a one-host cluster
// (docs/design.md "1 MiB writes").
//
// Invariants:
// - the path names exactly one TCP address: only the process that holds host:port binds it (the
//   SDS binds TCP first, then replaces a stale socket file), so a socket found there belongs to
//   the SDS a client was told to reach; the handshake still checks the SDS's id and proof;
// - plaintext only: a TLS data plane never takes the shortcut (the server refuses such
//   connections, the client does not try), so TLS keeps its "no plaintext byte" promise;
// - the path names the network namespace too (/proc/self/ns/net): a socket file is reachable
//   from any namespace that sees the folder, while the TCP address behind it means something
//   else in another one (test/helpers/net_cluster.ts puts every host in a namespace of its own on
//   one file system; a partition there must cut the shortcut too). Without that id: no shortcut;
// - only a folder this user owns and nobody else can write holds the sockets, and a client uses
//   only a socket file this user owns: another local user cannot plant a socket that relays (and
//   reads) a plaintext session, which loopback TCP would not let them do;
// - a client falls back to TCP when the socket is missing, refuses the connection or fails the
//   handshake: the shortcut can make a connection cheaper, never impossible.

import { lstatSync, mkdirSync, readlinkSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join } from "node:path";

/** Longest Unix socket path the kernel takes (sun_path is 108 bytes with its NUL). */
const SUN_PATH_MAX_BYTES = 107;

/** This process's network namespace ("4026531992" of "net:[4026531992]"), or null if unknown. */
const NET_NS: string | null = (() => {
  try {
    return /^net:\[(\d+)\]$/.exec(readlinkSync("/proc/self/ns/net"))?.[1] ?? null;
  } catch {
    return null;
  }
})();

/** Off when PF_DATAPLANE_LOCAL=0 (benches compare both; an operator can refuse the socket files). */
export function localSocketsEnabled(): boolean {
  return process.env.PF_DATAPLANE_LOCAL !== "0";
}

/** The folder holding the sockets: PF_DATAPLANE_SOCKET_DIR when an absolute path, else <tmpdir>/pf-dataplane. */
export function localSocketDir(): string {
  const dir = process.env.PF_DATAPLANE_SOCKET_DIR;
  // empty or relative: it would name a folder per working directory, where other processes do not look
  return dir !== undefined && isAbsolute(dir) ? dir : join(tmpdir(), "pf-dataplane");
}

/**
 * The socket path of the SDS listening on host:port, or null when there is none to use: the
 * shortcut is off, the host is a wildcard (it names no single address) or not a plain IP/name,
 * or the path would be too long.
 */
export function localSocketPath(host: string, port: number): string | null {
  if (!localSocketsEnabled()) return null;
  if (host === "" || host === "0.0.0.0" || host === "::" || host === "[::]") return null;
  if (!/^[0-9A-Za-z.:_-]{1,253}$/.test(host) || !Number.isInteger(port) || port <= 0 || port > 65535) return null;
  if (NET_NS === null) return null;
  const p = join(localSocketDir(), `sds-${NET_NS}-${host.replaceAll(":", "_")}-${port}.sock`);
  return Buffer.byteLength(p) <= SUN_PATH_MAX_BYTES ? p : null;
}

/** Owned by this user and (unless writableByOthersOk) writable by nobody else: a folder or file we may trust. */
function ownedHere(st: { uid: number; mode: number }, writableByOthersOk: boolean): boolean {
  const me = process.getuid?.() ?? -1;
  return st.uid === me && (writableByOthersOk || (st.mode & 0o022) === 0);
}

/**
 * Create (or check) the sockets' folder: ours, mode 0700. False when it cannot be trusted (made
 * by another user, or writable by others): then no socket is bound there and clients use TCP.
 */
export function prepareLocalSocketDir(path: string): boolean {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return ownedHere(lstatSync(dir), false);
}

/** The path, if a socket file of ours is there now (a client's check at each connect, not per IO). */
export function existingLocalSocket(host: string, port: number): string | null {
  const p = localSocketPath(host, port);
  if (p === null) return null;
  try {
    if (!ownedHere(lstatSync(dirname(p)), false)) return null;
    const st = statSync(p);
    return st.isSocket() && ownedHere(st, true) ? p : null;
  } catch {
    return null; // no such file (the SDS is elsewhere, or has not bound it): TCP
  }
}
