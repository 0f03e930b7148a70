// The NBD front end seen through libnbd's nbdsh: the errno a client gets for each refusal, both
// reply modes, the old EXPORT_NAME handshake, option negotiation, and PfErrors from the export
// mapped to errnos. libnbd's strict mode is turned off where it would refuse a request itself.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startNbdServer, type NbdServer } from "../src/sdc/nbd_server.ts";
import { MemoryExport, MemoryRegistry } from "./helpers/nbd_memory_export.ts";
import { nbdUri, requireTool, runNbdsh } from "./helpers/real_clients.ts";

const MiB = 1024 * 1024;
let server: NbdServer;
const vol = new MemoryExport("vol", 16 * MiB);
const ro = new MemoryExport("ro", 4 * MiB, { readOnly: true });
const faulty = new MemoryExport("faulty", 4 * MiB);
const registry = new MemoryRegistry([vol, ro, faulty]);
const uri = (name: string) => nbdUri(server.port, name);

/** Runs python with `h` and prints one JSON line; returns it parsed. */
async function py<T>(script: string): Promise<T> {
  const r = await runNbdsh(`import json, errno as E\n${script}`);
  const last = r.stdout.trim().split("\n").pop() ?? "";
  return JSON.parse(last) as T;
}

/** Python: run `expr` and give the errno name it failed with, or "ok". */
const TRY = `
def errname(f):
    try:
        f()
        return "ok"
    except nbd.Error as e:
        return e.errno if isinstance(e.errno, str) else E.errorcode.get(e.errno, str(e.errno))
`;

beforeAll(async () => {
  requireTool("nbdsh");
  server = await startNbdServer({ host: "127.0.0.1", port: 0, registry });
});
afterAll(async () => {
  await server?.stop();
});

describe("errnos for refused requests", () => {
  test("past the end: READ/TRIM EINVAL, WRITE/WRITE_ZEROES ENOSPC, huge offsets EINVAL", async () => {
    const r = await py<Record<string, string>>(`${TRY}
h.set_strict_mode(0)
h.connect_uri("${uri("vol")}")
s = h.get_size()
print(json.dumps({
  "read": errname(lambda: h.pread(4096, s)),
  "readStraddling": errname(lambda: h.pread(8192, s - 4096)),
  "write": errname(lambda: h.pwrite(b"x" * 4096, s)),
  "trim": errname(lambda: h.trim(4096, s)),
  "zero": errname(lambda: h.zero(4096, s)),
  "read2^60": errname(lambda: h.pread(512, 2**60)),
  "write2^63": errname(lambda: h.pwrite(b"x" * 512, 2**63)),
  "readLast": errname(lambda: h.pread(4096, s - 4096)),
  "empty": errname(lambda: h.pread(0, s)),
}))`);
    expect(r).toEqual({
      read: "EINVAL",
      readStraddling: "EINVAL",
      write: "ENOSPC",
      trim: "EINVAL",
      zero: "ENOSPC",
      "read2^60": "EINVAL",
      "write2^63": "ENOSPC",
      readLast: "ok",
      empty: "ok",
    });
  });

  test("read-only export: EPERM for write, trim, zero; reads work", async () => {
    const r = await py<Record<string, string | boolean>>(`${TRY}
h.set_strict_mode(0)
h.connect_uri("${uri("ro")}")
print(json.dumps({
  "ro": h.is_read_only() == 1,
  "write": errname(lambda: h.pwrite(b"x" * 4096, 0)),
  "trim": errname(lambda: h.trim(4096, 0)),
  "zero": errname(lambda: h.zero(4096, 0)),
  "read": errname(lambda: h.pread(4096, 0)),
  "flush": errname(lambda: h.flush()),
}))`);
    expect(r).toEqual({ ro: true, write: "EPERM", trim: "EPERM", zero: "EPERM", read: "ok", flush: "ok" });
    expect(ro.counts.write + ro.counts.trim + ro.counts.zero).toBe(0);
  });

  test("PfErrors from the export reach the client as errnos", async () => {
    const results: Record<string, Record<string, string>> = {};
    for (const code of ["NO_SPACE", "IO_ERROR", "READ_ONLY", "UNAVAILABLE"] as const) {
      faulty.failWith = code;
      results[code] = await py<Record<string, string>>(`${TRY}
h.connect_uri("${uri("faulty")}")
print(json.dumps({"write": errname(lambda: h.pwrite(b"x" * 4096, 0)), "read": errname(lambda: h.pread(4096, 0)), "flush": errname(lambda: h.flush())}))`);
    }
    faulty.failWith = null;
    expect(results).toEqual({
      NO_SPACE: { write: "ENOSPC", read: "ENOSPC", flush: "ENOSPC" },
      IO_ERROR: { write: "EIO", read: "EIO", flush: "EIO" },
      READ_ONLY: { write: "EPERM", read: "EPERM", flush: "EPERM" },
      UNAVAILABLE: { write: "EIO", read: "EIO", flush: "EIO" },
    });
  });
});

describe("reply modes and handshakes", () => {
  test("structured replies (default) and simple replies both read back what was written", async () => {
    const r = await py<{ sr: boolean[]; data: string[]; oob: string }>(`${TRY}
out = {"sr": [], "data": []}
h.connect_uri("${uri("vol")}")
out["sr"].append(h.get_structured_replies_negotiated() == 1)
h.pwrite(b"structured".ljust(512, b"\\0"), 4096)
out["data"].append(h.pread(512, 4096)[:10].decode())
h.shutdown()
h2 = nbd.NBD()
h2.set_request_structured_replies(False)
h2.set_strict_mode(0)
h2.connect_uri("${uri("vol")}")
out["sr"].append(h2.get_structured_replies_negotiated() == 1)
h2.pwrite(b"simple!!".ljust(512, b"\\0"), 8192)
out["data"].append(h2.pread(512, 8192)[:8].decode())
out["data"].append(h2.pread(512, 4096)[:10].decode())
out["oob"] = errname(lambda: h2.pread(512, h2.get_size()))
print(json.dumps(out))`);
    expect(r).toEqual({ sr: [true, false], data: ["structured", "simple!!", "structured"], oob: "EINVAL" });
  });

  test("EXPORT_NAME handshake (no fixed newstyle), with and without the 124 zero bytes", async () => {
    const r = await py<{ protocol: string[]; data: string[]; unknown: string }>(`${TRY}
out = {"protocol": [], "data": []}
for flags in (0, nbd.HANDSHAKE_FLAG_NO_ZEROES):
    g = nbd.NBD()
    g.set_handshake_flags(flags)
    g.connect_uri("${uri("vol")}")
    out["protocol"].append(g.get_protocol())
    g.pwrite(b"old-%d" % flags, 12288)
    out["data"].append(g.pread(5, 12288).decode())
    g.shutdown()
u = nbd.NBD()
u.set_handshake_flags(0)
def connect_unknown():
    u.connect_uri("${uri("nope")}")
out["unknown"] = errname(connect_unknown)
print(json.dumps(out))`);
    expect(r.protocol).toEqual(["newstyle", "newstyle"]);
    expect(r.data).toEqual(["old-0", "old-2"]);
    expect(r.unknown).not.toBe("ok");
  });

  test("option mode: LIST, INFO on each export, GO; unknown export refused by GO", async () => {
    const r = await py<{ list: string[]; sizes: number[]; ro: boolean[]; block: number[]; unknown: string; after: string }>(`${TRY}
out = {"list": [], "sizes": [], "ro": []}
h.set_opt_mode(True)
h.connect_uri("${nbdUri(server.port)}")
h.opt_list(lambda n, d: out["list"].append(n))
for name in ("vol", "ro"):
    h.set_export_name(name)
    h.opt_info()
    out["sizes"].append(h.get_size())
    out["ro"].append(h.is_read_only() == 1)
h.set_export_name("nope")
out["unknown"] = errname(lambda: h.opt_info())
h.set_export_name("vol")
h.opt_go()
out["block"] = [h.get_block_size(i) for i in (nbd.SIZE_MINIMUM, nbd.SIZE_PREFERRED, nbd.SIZE_MAXIMUM)]
out["after"] = h.pread(512, 4096)[:10].decode()
print(json.dumps(out))`);
    expect(r.list.sort()).toEqual(["faulty", "ro", "vol"]);
    expect(r.sizes).toEqual([16 * MiB, 4 * MiB]);
    expect(r.ro).toEqual([false, true]);
    expect(r.unknown).toBe("ENOENT");
    expect(r.block).toEqual([512, 4096, 32 * MiB]);
    expect(r.after).toBe("structured");
  });

  test("FUA on write/trim/zero reaches the export; FLUSH is forwarded", async () => {
    const before = { ...vol.counts };
    await py(`
h.connect_uri("${uri("vol")}")
h.pwrite(b"f" * 4096, 0, nbd.CMD_FLAG_FUA)
h.zero(4096, 4096, nbd.CMD_FLAG_FUA)
h.trim(4096, 8192, nbd.CMD_FLAG_FUA)
h.pwrite(b"n" * 4096, 0)
h.flush()
print(json.dumps(1))`);
    expect(vol.counts.fua - before.fua).toBe(3);
    expect(vol.counts.write - before.write).toBe(2);
    expect(vol.counts.flush - before.flush).toBe(1);
  });

  test("many aio commands in flight at once all complete with the right data", async () => {
    const r = await py<{ ok: boolean; n: number }>(`
h.connect_uri("${uri("vol")}")
bufs = []
for i in range(64):
    b = nbd.Buffer.from_bytearray(bytearray([i]) * 4096)
    bufs.append(b)
    h.aio_pwrite(b, 1048576 + i * 4096)
while h.aio_in_flight() > 0:
    h.poll(-1)
reads = []
for i in range(64):
    b = nbd.Buffer(4096)
    reads.append(b)
    h.aio_pread(b, 1048576 + i * 4096)
while h.aio_in_flight() > 0:
    h.poll(-1)
ok = all(reads[i].to_bytearray() == bytearray([i]) * 4096 for i in range(64))
print(json.dumps({"ok": ok, "n": len(reads)}))`);
    expect(r).toEqual({ ok: true, n: 64 });
  });
});
