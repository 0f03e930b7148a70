// The SDC's NBD front end: a Bun TCP listener that serves the registry's exports to NBD clients
// (qemu, libnbd tools, fio, nbd-client). Protocol work lives in nbd_session.ts / nbd_handshake.ts;
// this file only accepts connections, wires socket events to sessions, and closes sessions when
// an export is unmapped or the server stops.
//
// Invariants: TCP_NODELAY on every connection; a session's failure (bad client, drop, exception in
// its handlers) closes that connection only, never the listener; stop() closes every connection.
// STARTTLS (nbd_tls.ts): the accepted plain socket is upgraded in place with Bun's
// socket.upgradeTLS(); from then on the session talks to the TLS socket only (ConnSocket), and the
// raw socket's own events (ciphertext, its close) are ignored.
// Revocation (nbd_revocations.ts): the server keeps the client certificate of every session that
// was accepted with one; when a new map revokes a certificate, that session is closed at once.

import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import { consola } from "consola";
import type { ExportRegistry } from "./nbd_export.ts";
import { NbdSession, type SessionSocket, type SessionTls } from "./nbd_session.ts";
import { revokedReason, type PeerCertId } from "./nbd_revocations.ts";
import { checkPeer, peerCertId, serverTlsOptions, type NbdTlsMaterial } from "./nbd_tls.ts";

export type { ExportRegistry, NbdExport } from "./nbd_export.ts";

export interface NbdServerOptions {
  host: string;
  /** 0 = pick a free port */
  port: number;
  registry: ExportRegistry;
  /** drop clients that have not chosen an export by then (default Limits.nbdHandshakeTimeoutMs) */
  handshakeTimeoutMs?: number;
  /** TLS material and mode (--nbd-tls on|require); absent: off, STARTTLS gets ERR_UNSUP */
  tls?: NbdTlsMaterial;
}

/** Connection counts for metrics and status (computed when asked, never on the IO path). */
export interface NbdServerStats {
  connections: number;
  /** requests started and not yet answered, over all connections */
  inflightIos: number;
  /** connections in the transmission phase, by export name */
  connectionsByExport: Map<string, number>;
}

export interface NbdServer {
  port: number;
  stop(): Promise<void>;
  /** disconnect sessions of an export that was unmapped */
  closeExport(name: string): void;
  stats(): NbdServerStats;
}

interface ConnData {
  session: NbdSession | null;
}

/** The socket a session writes to: the accepted one, then the TLS one after STARTTLS. */
class ConnSocket implements SessionSocket {
  constructor(public current: Socket<ConnData>) {}
  write(data: Uint8Array, byteOffset?: number, byteLength?: number): number {
    return this.current.write(data, byteOffset, byteLength);
  }
  pause(): void {
    this.current.pause();
  }
  resume(): void {
    this.current.resume();
  }
  end(): void {
    this.current.end();
  }
}

export async function startNbdServer(opts: NbdServerOptions): Promise<NbdServer> {
  const sessions = new Set<NbdSession>();
  /** the client certificate each TLS session was accepted with (verify-peer only) */
  const peerCerts = new Map<NbdSession, PeerCertId>();
  let nextId = 1;
  const stopRevocations = opts.tls?.revocations?.onRevoked(() => {
    const list = opts.tls?.revocations;
    for (const [session, id] of peerCerts) {
      const e = list?.find(id);
      if (e === undefined) continue;
      const why = revokedReason(id, e);
      consola.warn(`nbd: connection ${session.id} (${session.peer}, export "${session.exportName ?? "-"}"): ${why}; closing it`);
      peerCerts.delete(session);
      session.shutdown(why);
    }
  });

  // A bug reached by one client's input must not take the server down: drop that client.
  const failed = (session: NbdSession, what: string, e: unknown): void => {
    consola.error(`nbd: connection ${session.id}: ${what} handler failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    session.shutdown("internal error");
    sessions.delete(session);
    peerCerts.delete(session);
  };
  const guarded = (s: Socket<ConnData>, what: string, f: (session: NbdSession) => void): void => {
    const session = s.data.session;
    if (session === null) return;
    try {
      f(session);
    } catch (e) {
      failed(session, what, e);
    }
  };

  const common = {
    data(s: Socket<ConnData>, chunk: Buffer) {
      // the IO path: no closure per data event
      const session = s.data.session;
      if (session === null) return;
      try {
        session.onData(chunk);
      } catch (e) {
        failed(session, "data", e);
      }
    },
    drain(s: Socket<ConnData>) {
      guarded(s, "drain", (ss) => ss.onDrain());
    },
    close(s: Socket<ConnData>) {
      const session = s.data.session;
      if (session === null) return;
      sessions.delete(session);
      peerCerts.delete(session);
      session.onClose();
    },
    error(s: Socket<ConnData>, err: Error) {
      consola.debug(`nbd: connection ${s.data.session?.id ?? "?"}: socket error: ${err.message}`);
    },
  };

  const tlsOf = (s: Socket<ConnData>, conn: ConnSocket, material: NbdTlsMaterial): SessionTls => ({
    mode: material.mode,
    upgrade(done) {
      const session = s.data.session;
      // the raw socket now carries ciphertext: its data and close events are the TLS socket's
      s.data = { session: null };
      let answered = false;
      const handlers: SocketHandler<ConnData> = {
        ...common,
        handshake(ts, success, authorizationError) {
          if (answered) return;
          answered = true;
          if (!success) {
            done(`TLS handshake failed: ${authorizationError?.message ?? "unknown error"}`);
            return;
          }
          const refusal = checkPeer(material, ts);
          const id = refusal === null && material.verifyPeer && session !== null ? peerCertId(material, ts) : null;
          if (id !== null && session !== null) peerCerts.set(session, id);
          done(refusal);
        },
      };
      const [, tlsSocket] = s.upgradeTLS<ConnData>({ data: { session }, tls: serverTlsOptions(material), socket: handlers });
      conn.current = tlsSocket;
    },
  });

  const listener: TCPSocketListener<ConnData> = Bun.listen<ConnData>({
    hostname: opts.host,
    port: opts.port,
    data: { session: null },
    socket: {
      ...common,
      open(s) {
        s.setNoDelay(true);
        const conn = new ConnSocket(s);
        const tls = opts.tls === undefined ? undefined : tlsOf(s, conn, opts.tls);
        const session = new NbdSession(nextId++, conn, opts.registry, `${s.remoteAddress}:${s.remotePort}`, opts.handshakeTimeoutMs, tls);
        s.data = { session };
        sessions.add(session);
        guarded(s, "open", (ss) => ss.start());
      },
    },
  });

  return {
    port: listener.port,
    stats() {
      const byExport = new Map<string, number>();
      let inflight = 0;
      for (const s of sessions) {
        inflight += s.inFlightCount;
        if (s.exportName !== null) byExport.set(s.exportName, (byExport.get(s.exportName) ?? 0) + 1);
      }
      return { connections: sessions.size, inflightIos: inflight, connectionsByExport: byExport };
    },
    closeExport(name: string) {
      for (const s of sessions) {
        if (s.exportName === name) s.shutdown(`export "${name}" was unmapped`);
      }
    },
    async stop() {
      stopRevocations?.();
      for (const s of sessions) s.shutdown("server stopping");
      sessions.clear();
      peerCerts.clear();
      listener.stop(true);
    },
  };
}
