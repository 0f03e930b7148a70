// What the NBD server serves: the interface a mapped volume implements (NbdExport) and the set of
// exports the SDC offers (ExportRegistry). The server never imports the SDC's IO code; the SDC's
// volume objects satisfy these interfaces structurally.
//
// Invariants the implementer keeps: offsets and lengths passed in are already bounds-checked
// against sizeBytes (and ≤ Limits.nbdMaxRequestBytes for read/write); failures reject with PfError
// (mapped to an NBD errno by nbdErrnoOf); a write/trim/zero with `fua` resolves only once durable
// on every copy; flush() covers every write acknowledged before it was called (on every
// connection when multiConn is true). A `meter`, when present, is told of every request the
// session completed (the client's view: from the request's arrival to its answer).

import type { Bytes } from "../proto/scatter.ts";

/** Told of each completed request; called on the IO path, so it must not allocate. */
export interface ExportMeter {
  /** `cmd` is the NBD command (Cmd), `lengthBytes` its length, `seconds` from arrival to answer */
  completed(cmd: number, lengthBytes: number, seconds: number, ok: boolean): void;
  /** a FLUSH the SDC answered without the network (every write since the last flush was durable) */
  flushedLocally?(): void;
}

/** Admission of requests for per-mapping QoS (qos_gate.ts): 0 = go, else ms to wait before asking again. */
export interface NbdAdmission {
  admit(cost: "io" | "flush", payloadBytes: number): number;
}

export interface NbdExport {
  name: string;
  /** per-mapping QoS; absent or always 0: unlimited */
  qos?: NbdAdmission;
  sizeBytes: number;
  readOnly: boolean;
  /** CAN_MULTI_CONN is advertised only when this is true (FLUSH covers writes of all connections) */
  multiConn: boolean;
  /** resolves with exactly lengthBytes bytes that nobody modifies afterwards (large ones are sent
   *  without copying, possibly after later requests ran); rejects with PfError */
  read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array>;
  write(offsetBytes: number, data: Uint8Array, fua: boolean): Promise<void>;
  flush(): Promise<void>;
  trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void>;
  writeZeroes(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void>;
  /** optional callback forms of read/write (no promise per IO); `done` is never called synchronously */
  readCb?(offsetBytes: number, lengthBytes: number, done: (err: unknown, data: Uint8Array) => void): void;
  /** `data` may be the pieces the payload arrived in (scatter.ts; their buffers are never written again) */
  writeCb?(offsetBytes: number, data: Bytes, fua: boolean, done: (err: unknown, data: Uint8Array) => void): void;
  /** IO counters of this export (the SDC's per-volume metrics); absent = not metered */
  readonly meter?: ExportMeter | null;
}

export interface ExportRegistry {
  get(name: string): NbdExport | undefined;
  list(): NbdExport[];
}
