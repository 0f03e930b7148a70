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
// - a client falls back to TCP when the socket is missing, refuses the connection or fails the
//   handshake: the shortcut can make a connection cheaper, never impossible.

import { statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Longest Unix socket path the kernel takes (sun_path is 108 bytes with its NUL). */
const SUN_PATH_MAX_BYTES = 107;

/** Off when PF_DATAPLANE_LOCAL=0 (benches compare both; an operator can refuse the socket files). */
export function localSocketsEnabled(): boolean {
  return process.env.PF_DATAPLANE_LOCAL !== "0";
}

/** The folder holding the sockets: PF_DATAPLANE_SOCKET_DIR, else <tmpdir>/pf-dataplane. */
export function localSocketDir(): string {
  return process.env.PF_DATAPLANE_SOCKET_DIR ?? join(tmpdir(), "pf-dataplane");
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
  const p = join(localSocketDir(), `sds-${host.replaceAll(":", "_")}-${port}.sock`);
  return Buffer.byteLength(p) <= SUN_PATH_MAX_BYTES ? p : null;
}

/** The path, if a socket file is there now (a client's cheap check before it tries). */
export function existingLocalSocket(host: string, port: number): string | null {
  const p = localSocketPath(host, port);
  if (p === null) return null;
  try {
    return statSync(p).isSocket() ? p : null;
  } catch {
    return null; // no such file (the SDS is elsewhere, or has not bound it): TCP
  }
}
