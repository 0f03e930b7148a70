// A minimal NBD client for `pf up`: asks an SDC which exports it serves (NBD_OPT_LIST), so that
// `pf up` prints an NBD URI only once a client can really open it. Not on any data path.

import { connect, type Socket } from "node:net";
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

/** Names of the exports an NBD server lists; rejects on any protocol or network error. */
export function listNbdExports(host: string, port: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const sock: Socket = connect(port, host);
    let buf = Buffer.alloc(0);
    let greeted = false;
    const names: string[] = [];
    const done = (err: Error | null) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(names);
    };
    const timer = setTimeout(() => done(new Error(`NBD probe of ${host}:${port} timed out`)), PROBE_TIMEOUT_MS);
    sock.on("error", (e) => done(e));
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!greeted) {
        if (buf.length < GREETING_BYTES) return;
        const g = decodeGreeting(buf);
        if (g instanceof NbdDecodeError) return done(new Error(`NBD probe: ${g.field}: ${g.message}`));
        greeted = true;
        buf = buf.subarray(GREETING_BYTES);
        sock.write(encodeClientFlags(ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES));
        sock.write(encodeOptionRequest(Opt.LIST));
      }
      for (;;) {
        const r = decodeOptionReply(buf, 0);
        if (r instanceof NbdDecodeError) return; // wait for more bytes
        buf = buf.subarray(20 + r.data.length);
        if (r.replyType === Rep.SERVER) {
          const n = r.data.readUInt32BE(0);
          names.push(r.data.subarray(4, 4 + n).toString("utf8"));
        } else if (r.replyType === Rep.ACK) {
          sock.write(encodeOptionRequest(Opt.ABORT));
          return done(null);
        } else {
          return done(new Error(`NBD probe: LIST answered with reply type 0x${r.replyType.toString(16)}`));
        }
      }
    });
  });
}
