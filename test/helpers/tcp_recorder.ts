// A loopback TCP proxy that records every byte both ways (a wire capture) and can rewrite the
// bytes the server sends (a man in the middle). For "a capture holds no key" and tamper tests.

import type { Socket, TCPSocketListener } from "bun";

export interface Recorder {
  port: number;
  /** bytes client -> server, then server -> client, per connection, in order */
  toServer: Uint8Array[];
  toClient: Uint8Array[];
  all(): Uint8Array;
  stop(): void;
}

interface Pair {
  up: Socket<undefined> | null;
  pendingUp: Uint8Array[];
}

/** Listen on 127.0.0.1 (free port) and forward to targetPort; `rewriteToClient` may change server bytes. */
export function recorder(targetPort: number, rewriteToClient?: (chunk: Uint8Array) => Uint8Array): Recorder {
  const toServer: Uint8Array[] = [];
  const toClient: Uint8Array[] = [];
  const ups = new Set<Socket<undefined>>();
  const listener: TCPSocketListener<Pair> = Bun.listen<Pair>({
    hostname: "127.0.0.1",
    port: 0,
    data: { up: null, pendingUp: [] },
    socket: {
      open(down) {
        down.data = { up: null, pendingUp: [] };
        void Bun.connect<undefined>({
          hostname: "127.0.0.1",
          port: targetPort,
          socket: {
            data(_u, d) {
              const out = rewriteToClient ? rewriteToClient(new Uint8Array(d)) : new Uint8Array(d);
              toClient.push(out.slice());
              down.write(out);
            },
            close() {
              down.end();
            },
            error() {
              down.end();
            },
          },
        }).then((up) => {
          ups.add(up);
          down.data.up = up;
          for (const p of down.data.pendingUp) up.write(p);
          down.data.pendingUp = [];
        });
      },
      data(down, d) {
        const copy = new Uint8Array(d).slice();
        toServer.push(copy);
        if (down.data.up) down.data.up.write(copy);
        else down.data.pendingUp.push(copy);
      },
      close(down) {
        down.data.up?.end();
      },
    },
  });
  return {
    port: listener.port,
    toServer,
    toClient,
    all() {
      const parts = [...toServer, ...toClient];
      const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.byteLength;
      }
      return out;
    },
    stop() {
      listener.stop(true);
      for (const u of ups) u.end();
    },
  };
}

/** True when any `windowBytes`-long run of `key` occurs in `capture`. */
export function containsKeyBytes(capture: Uint8Array, key: Uint8Array, windowBytes = 6): boolean {
  const hay = Buffer.from(capture);
  for (let i = 0; i + windowBytes <= key.byteLength; i++) {
    if (hay.indexOf(Buffer.from(key.subarray(i, i + windowBytes))) >= 0) return true;
  }
  return false;
}
