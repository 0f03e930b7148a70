// A plain RAM NBD export for the NBD-layer benchmarks: the cheapest possible backend, so their
// numbers measure the NBD server (and, for bench/nbd_tls.ts, its TLS) and nothing behind it.

import type { NbdExport } from "../src/sdc/nbd_export.ts";

export function ramExport(name: string, sizeBytes: number): NbdExport {
  const data = Buffer.alloc(sizeBytes);
  return {
    name,
    sizeBytes,
    readOnly: false,
    multiConn: true,
    read: async (o, n) => data.subarray(o, o + n),
    write: async (o, d) => void data.set(d, o),
    flush: async () => {},
    trim: async (o, n) => void data.fill(0, o, o + n),
    writeZeroes: async (o, n) => void data.fill(0, o, o + n),
  };
}
