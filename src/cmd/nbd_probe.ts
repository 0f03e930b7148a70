// A minimal NBD client for `pf up` and `pf doctor`: asks an SDC which exports it serves
// (NBD_OPT_LIST), so that `pf up` prints an NBD URI only once a client can really open it and
// doctor can say the NBD server works. With TLS it sends STARTTLS first (as a client that requires
// TLS should) and goes on only once the SDC's certificate verified against the CA it was given
// (and, with serverName, names that host). Not on any data path.

import { connect, type Socket } from "node:net";
import { checkServerIdentity as checkIdentity, connect as tlsConnect, type PeerCertificate, type TLSSocket } from "node:tls";
import {
  ClientFlag,
  GREETING_BYTES,
  NbdDecodeError,
  Opt,
  Rep,
  decodeGreeting,
  decodeOptionReply,
  encodeClientFlags,
  encodeOptionRequest,
} from "../proto/nbd.ts";

const PROBE_TIMEOUT_MS = 3000;

/** STARTTLS before LIST (an SDC with --nbd-tls=require): the CA, and a certificate if it asks. */
export interface NbdProbeTls {
  caPem: string;
  /** where caPem came from, for the error message ("the cluster NBD CA from the MDM") */
  caName?: string;
  certPem?: string;
  keyPem?: string;
  /** check that the certificate names this host (IP or DNS name) too; absent: the CA only */
  serverName?: string;
}

/** Names of the exports an NBD server lists; rejects on any protocol or network error. */
export function listNbdExports(host: string, port: number, tls?: NbdProbeTls): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const sock: Socket = connect(port, host);
    let secure: TLSSocket | null = null;
    let buf = Buffer.alloc(0);
    let greeted = false;
    const names: string[] = [];
    const done = (err: Error | null) => {
      clearTimeout(timer);
      secure?.destroy();
      sock.destroy();
      if (err) reject(err);
      else resolve(names);
    };
    const send = (b: Buffer) => (secure ?? sock).write(b);
    const timer = setTimeout(() => done(new Error(`NBD probe of ${host}:${port} timed out`)), PROBE_TIMEOUT_MS);
    const startTls = (t: NbdProbeTls) => {
      sock.removeAllListeners("data");
      // the CA is always checked; the host name only when asked (pf up probes its own SDC)
      const serverName = t.serverName;
      const checkServerIdentity = serverName === undefined ? () => undefined : (_host: string, cert: PeerCertificate) => checkIdentity(serverName, cert);
      const ts = tlsConnect({ socket: sock, ca: t.caPem, cert: t.certPem, key: t.keyPem, checkServerIdentity });
      secure = ts;
      ts.on("error", (e) => done(new Error(`NBD probe: TLS handshake with ${host}:${port} failed (trusting ${t.caName ?? "the CA given"}): ${e.message}`)));
      ts.on("secureConnect", () => {
        if (!ts.authorized) return done(new Error(`NBD probe: the SDC's TLS certificate does not verify against ${t.caName ?? "the CA given"}: ${String(ts.authorizationError)}`));
        send(encodeOptionRequest(Opt.LIST));
      });
      ts.on("data", onReplies);
    };
    const onReplies = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const r = decodeOptionReply(buf, 0);
        if (r instanceof NbdDecodeError) return; // wait for more bytes
        buf = buf.subarray(20 + r.data.length);
        if (r.option === Opt.STARTTLS && tls !== undefined && secure === null) {
          if (r.replyType !== Rep.ACK) return done(new Error(`NBD probe: STARTTLS answered with reply type 0x${r.replyType.toString(16)}`));
          return startTls(tls);
        }
        if (r.replyType === Rep.SERVER) {
          const n = r.data.readUInt32BE(0);
          names.push(r.data.subarray(4, 4 + n).toString("utf8"));
        } else if (r.replyType === Rep.ACK) {
          send(encodeOptionRequest(Opt.ABORT));
          return done(null);
        } else if (r.replyType === Rep.ERR_TLS_REQD) {
          return done(new Error("NBD probe: the SDC requires TLS (--nbd-tls=require) and the probe has no CA for it"));
        } else {
          return done(new Error(`NBD probe: LIST answered with reply type 0x${r.replyType.toString(16)}`));
        }
      }
    };
    sock.on("error", (e) => done(e));
    sock.on("data", (chunk: Buffer) => {
      if (greeted) return onReplies(chunk);
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < GREETING_BYTES) return;
      const g = decodeGreeting(buf);
      if (g instanceof NbdDecodeError) return done(new Error(`NBD probe: ${g.field}: ${g.message}`));
      greeted = true;
      const rest = buf.subarray(GREETING_BYTES);
      buf = Buffer.alloc(0);
      sock.write(encodeClientFlags(ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES));
      sock.write(encodeOptionRequest(tls !== undefined ? Opt.STARTTLS : Opt.LIST));
      if (rest.length > 0) onReplies(rest);
    });
  });
}
