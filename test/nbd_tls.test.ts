// NBD over TLS (NBD_OPT_STARTTLS, X.509) on the SDC's NBD server, against real clients: nbdinfo
// nbds:// with a tls-certificates directory, qemu-io / qemu-img with tls-creds-x509, fio's nbd
// engine with the CA in $HOME/.pki/libnbd; plaintext clients against `require` (ERR_TLS_REQD, no
// fallback), a client that does not trust the CA, client certificates (verify-peer), and the
// certificate directory's rules, and the NBD probe pf up and pf doctor use (STARTTLS, CA and host
// name checked, each refusal named). Backed by RAM exports; a missing tool fails the test.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { PfError } from "../src/proto/errors.ts";
import {
  ClientFlag,
  GREETING_BYTES,
  NbdDecodeError,
  Opt,
  Rep,
  decodeOptionReply,
  encodeClientFlags,
  encodeOptionRequest,
  type DecodedOptionReply,
} from "../src/proto/nbd.ts";
import { generateSelfSignedCert, generateSignedCert, type SelfSignedCert } from "../src/proto/tls_cert.ts";
import { startNbdServer, type NbdServer } from "../src/sdc/nbd_server.ts";
import { NbdTlsFiles, checkPeer, loadNbdTls, warnPlaintextExposure, type NbdTlsMaterial } from "../src/sdc/nbd_tls.ts";
import { NbdRevocations } from "../src/sdc/nbd_revocations.ts";
import { MemoryExport, MemoryRegistry } from "./helpers/nbd_memory_export.ts";
import { listNbdExports } from "../src/cmd/nbd_probe.ts";
import { requireTool, run, runFio, runOk, runQemuImg } from "./helpers/real_clients.ts";

const MiB = 1024 * 1024;
const T = 180_000;

let dir: string;
let tls: NbdTlsMaterial;
let requireSrv: NbdServer;
let onSrv: NbdServer;
let offSrv: NbdServer;
let peerSrv: NbdServer;
/** client tls-certificates directories */
let trusted: string; // ca-cert.pem only
let withCert: string; // ca-cert.pem + a client certificate signed by the NBD CA
let rogue: string; // trusts another CA
let rogueClient: SelfSignedCert; // a client certificate from another CA
let fioHome: string; // $HOME with .pki/libnbd/ca-cert.pem for fio
const vol = new MemoryExport("vol", 64 * MiB);
const registry = new MemoryRegistry([vol]);

const nbds = (port: number, certDir: string, name = "vol") => `nbds://127.0.0.1:${port}/${name}?tls-certificates=${certDir}`;
const tlsObject = (certDir: string) => ["--object", `tls-creds-x509,id=tls0,dir=${certDir},endpoint=client`];
const nbdOpts = (port: number) => `driver=nbd,host=127.0.0.1,port=${port},export=vol,tls-creds=tls0`;

function writeClientDir(path: string, caPem: string, client?: SelfSignedCert): string {
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, "ca-cert.pem"), caPem);
  if (client) {
    writeFileSync(join(path, "client-cert.pem"), client.certPem);
    writeFileSync(join(path, "client-key.pem"), client.keyPem, { mode: 0o600 });
  }
  return path;
}

beforeAll(async () => {
  for (const t of ["nbdinfo", "qemu-io", "qemu-img", "fio"]) requireTool(t);
  dir = mkdtempSync(join(tmpdir(), "pf-nbd-tls-"));
  // an empty directory: the SDC makes its CA and issues its server certificate
  tls = loadNbdTls({ mode: "require", dir: join(dir, "sdc-tls"), listenHost: "127.0.0.1", verifyPeer: false });
  const ca = { certPem: tls.caPem, keyPem: readFileSync(join(dir, "sdc-tls", NbdTlsFiles.caKey), "utf8") };
  trusted = writeClientDir(join(dir, "trusted"), tls.caPem);
  withCert = writeClientDir(join(dir, "with-cert"), tls.caPem, generateSignedCert({ commonName: "backup1", hosts: [], issuer: ca }));
  const otherCa = generateSelfSignedCert({ commonName: "someone else's CA", hosts: [] });
  rogue = writeClientDir(join(dir, "rogue"), otherCa.certPem);
  rogueClient = generateSignedCert({ commonName: "rogue-client", hosts: [], issuer: otherCa });
  fioHome = join(dir, "home");
  writeClientDir(join(fioHome, ".pki", "libnbd"), tls.caPem);
  requireSrv = await startNbdServer({ host: "127.0.0.1", port: 0, registry, tls });
  onSrv = await startNbdServer({ host: "127.0.0.1", port: 0, registry, tls: { ...tls, mode: "on" } });
  offSrv = await startNbdServer({ host: "127.0.0.1", port: 0, registry });
  peerSrv = await startNbdServer({ host: "127.0.0.1", port: 0, registry, tls: { ...tls, verifyPeer: true } });
});

afterAll(async () => {
  await requireSrv?.stop();
  await onSrv?.stop();
  await offSrv?.stop();
  await peerSrv?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// ---- a raw option-phase client (plaintext, then optionally TLS) ----

class RawOptions {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;
  private tlsSock: TLSSocket | null = null;
  private constructor(private readonly sock: Socket) {
    sock.on("data", (c: Buffer) => this.feed(c));
    sock.on("close", () => this.onClosed());
    sock.on("error", () => this.onClosed());
  }
  private feed(c: Buffer): void {
    this.buf = Buffer.concat([this.buf, c]);
    for (const w of this.waiters.splice(0)) w();
  }
  private onClosed(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w();
  }
  static async open(port: number): Promise<RawOptions> {
    const sock = connect(port, "127.0.0.1");
    const c = new RawOptions(sock);
    await c.bytes(GREETING_BYTES);
    c.buf = c.buf.subarray(GREETING_BYTES);
    sock.write(encodeClientFlags(ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES));
    return c;
  }
  private async bytes(n: number, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.closed) throw new Error(`closed with ${this.buf.length}/${n} bytes`);
      if (Date.now() > deadline) throw new Error("timed out");
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }
  send(option: number, data: Buffer = Buffer.alloc(0), extra: Buffer = Buffer.alloc(0)): void {
    (this.tlsSock ?? this.sock).write(Buffer.concat([encodeOptionRequest(option, data), extra]));
  }
  async reply(): Promise<DecodedOptionReply> {
    for (;;) {
      const r = decodeOptionReply(this.buf, 0);
      if (!(r instanceof NbdDecodeError)) {
        this.buf = this.buf.subarray(20 + r.data.length);
        return r;
      }
      await this.bytes(this.buf.length + 1);
    }
  }
  /** wait until the server closes the connection (true) or timeoutMs passes (false) */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await Bun.sleep(20);
    return this.closed;
  }
  /** after a STARTTLS ACK: the TLS handshake on the same socket */
  startTls(caPem: string, client?: SelfSignedCert): Promise<void> {
    this.sock.removeAllListeners("data");
    return new Promise((resolve, reject) => {
      const ts = tlsConnect({ socket: this.sock, ca: caPem, servername: "localhost", cert: client?.certPem, key: client?.keyPem });
      this.tlsSock = ts;
      ts.on("secureConnect", () => resolve());
      ts.on("data", (c: Buffer) => this.feed(c));
      ts.on("close", () => this.onClosed());
      ts.on("error", (e) => {
        this.onClosed();
        reject(e);
      });
    });
  }
  close(): void {
    this.tlsSock?.destroy();
    this.sock.destroy();
  }
}

const goData = (name: string) => {
  const n = Buffer.from(name);
  const b = Buffer.alloc(4 + n.length + 2);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  return b;
};

describe("real clients over TLS (--nbd-tls=require)", () => {
  test("nbdinfo nbds:// with a tls-certificates directory", async () => {
    const r = await runOk(["nbdinfo", "--json", nbds(requireSrv.port, trusted)]);
    const info = JSON.parse(r.stdout) as { protocol: string; TLS?: boolean; exports: { "export-size": number }[] };
    expect(info.TLS).toBe(true);
    expect(info.exports[0]?.["export-size"]).toBe(64 * MiB);
  }, T);

  test("qemu-io with tls-creds-x509: write -P then read -P verifies over TLS", async () => {
    const r = await run(["qemu-io", ...tlsObject(trusted), "--image-opts", nbdOpts(requireSrv.port), "-c", "write -P 0xab 1M 1M", "-c", "write -P 0x3c 5M 64k", "-c", "read -P 0xab 1M 1M", "-c", "read -P 0x3c 5M 64k"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout + r.stderr).not.toMatch(/fail/i);
    // the bytes really are in the export
    expect(vol.data[1 * MiB]).toBe(0xab);
    expect(vol.data[5 * MiB + 65535]).toBe(0x3c);
  }, T);

  test("qemu-img convert to the export over TLS, then qemu-img compare says identical", async () => {
    const src = join(dir, "src.img");
    const buf = Buffer.alloc(16 * MiB);
    for (let i = 0; i < buf.length; i += 4096) buf.writeUInt32LE((i * 2654435761) >>> 0, i);
    writeFileSync(src, buf);
    await runQemuImg(["convert", "-n", ...tlsObject(trusted), "-f", "raw", "--target-image-opts", src, nbdOpts(requireSrv.port)]);
    const cmp = await run(["qemu-img", "compare", ...tlsObject(trusted), "--image-opts", `driver=raw,file.driver=file,file.filename=${src}`, `driver=raw,file.driver=nbd,file.host=127.0.0.1,file.port=${requireSrv.port},file.export=vol,file.tls-creds=tls0`]);
    expect(cmp.stdout).toContain("Images are identical");
    expect(cmp.exitCode).toBe(0);
    expect(Buffer.compare(vol.data.subarray(0, 16 * MiB), buf)).toBe(0);
  }, T);

  test("fio's nbd engine: nbds:// with the CA in $HOME/.pki/libnbd, randwrite verified with crc32c", async () => {
    const f = await runFio(
      ["--name=tls", "--ioengine=nbd", `--uri=nbds://127.0.0.1:${requireSrv.port}/vol`, "--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=16M", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0"],
      { env: { HOME: fioHome } },
    );
    const job = f.json.jobs[0];
    expect(job?.error).toBe(0);
    expect(job?.write.io_bytes).toBe(16 * MiB);
  }, T);

  test("a plaintext nbdinfo is refused, and so is one that does not trust the CA", async () => {
    const plain = await run(["nbdinfo", `nbd://127.0.0.1:${requireSrv.port}/vol`]);
    expect(plain.exitCode).not.toBe(0);
    const untrusting = await run(["nbdinfo", nbds(requireSrv.port, rogue)]);
    expect(untrusting.exitCode).not.toBe(0);
    expect(untrusting.stderr).toMatch(/certificate/i);
    // the server is unharmed
    await runOk(["nbdinfo", "--size", nbds(requireSrv.port, trusted)]);
  }, T);

  test("qemu-io that does not trust the CA cannot open the export", async () => {
    const r = await run(["qemu-io", ...tlsObject(rogue), "--image-opts", nbdOpts(requireSrv.port), "-c", "read 0 4k"]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/certificate|TLS|handshake/i);
  }, T);
});

describe("FORCEDTLS on the wire", () => {
  test("every option but STARTTLS and ABORT gets NBD_REP_ERR_TLS_REQD; the export stays closed", async () => {
    const c = await RawOptions.open(requireSrv.port);
    for (const opt of [Opt.STRUCTURED_REPLY, Opt.LIST, Opt.INFO, Opt.GO, Opt.LIST_META_CONTEXT, 42]) {
      c.send(opt, opt === Opt.INFO || opt === Opt.GO ? goData("vol") : Buffer.alloc(0));
      const r = await c.reply();
      expect(r.option).toBe(opt);
      expect(r.replyType).toBe(Rep.ERR_TLS_REQD);
    }
    c.send(Opt.ABORT);
    expect((await c.reply()).replyType).toBe(Rep.ACK);
    expect(await c.closedWithin(2000)).toBe(true);
  });

  test("EXPORT_NAME before STARTTLS: the connection is closed without a byte of the export", async () => {
    const c = await RawOptions.open(requireSrv.port);
    c.send(Opt.EXPORT_NAME, Buffer.from("vol"));
    expect(await c.closedWithin(3000)).toBe(true);
  });

  test("STARTTLS, then options over TLS work; a second STARTTLS is ERR_INVALID and TLS_REQD is never sent", async () => {
    const c = await RawOptions.open(requireSrv.port);
    c.send(Opt.STARTTLS);
    expect((await c.reply()).replyType).toBe(Rep.ACK);
    await c.startTls(tls.caPem);
    c.send(Opt.LIST);
    const server = await c.reply();
    expect(server.replyType).toBe(Rep.SERVER);
    expect((await c.reply()).replyType).toBe(Rep.ACK);
    c.send(Opt.STARTTLS);
    const again = await c.reply();
    expect(again.replyType).toBe(Rep.ERR_INVALID);
    c.send(Opt.STRUCTURED_REPLY);
    expect((await c.reply()).replyType).toBe(Rep.ACK);
    c.close();
  });

  test("plaintext bytes sent behind STARTTLS (injection) close the connection instead of being read", async () => {
    const c = await RawOptions.open(requireSrv.port);
    c.send(Opt.STARTTLS, Buffer.alloc(0), encodeOptionRequest(Opt.LIST));
    // the ACK may or may not arrive first; what must not happen is a LIST answer
    expect(await c.closedWithin(3000)).toBe(true);
  });

  test("--nbd-tls=on: plaintext and TLS clients both work", async () => {
    await runOk(["nbdinfo", "--size", `nbd://127.0.0.1:${onSrv.port}/vol`]);
    const r = await runOk(["nbdinfo", "--json", nbds(onSrv.port, trusted)]);
    expect((JSON.parse(r.stdout) as { TLS?: boolean }).TLS).toBe(true);
  }, T);

  test("TLS off: STARTTLS gets ERR_UNSUP and an nbds:// client gives up", async () => {
    const c = await RawOptions.open(offSrv.port);
    c.send(Opt.STARTTLS);
    expect((await c.reply()).replyType).toBe(Rep.ERR_UNSUP);
    c.close();
    const r = await run(["nbdinfo", nbds(offSrv.port, trusted)]);
    expect(r.exitCode).not.toBe(0);
  }, T);
});

describe("client certificates (--nbd-tls-verify-peer)", () => {
  test("nbdinfo without a client certificate is refused; with one signed by the NBD CA it works", async () => {
    const without = await run(["nbdinfo", "--size", nbds(peerSrv.port, trusted)]);
    expect(without.exitCode).not.toBe(0);
    const withOne = await runOk(["nbdinfo", "--size", nbds(peerSrv.port, withCert)]);
    expect(withOne.stdout.trim()).toBe(String(64 * MiB));
  }, T);

  test("qemu-io with a client certificate writes and reads back", async () => {
    const r = await run(["qemu-io", ...tlsObject(withCert), "--image-opts", nbdOpts(peerSrv.port), "-c", "write -P 0x77 20M 256k", "-c", "read -P 0x77 20M 256k"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).not.toMatch(/fail/i);
  }, T);

  test("a client certificate from another CA is refused after the handshake (pf's own check)", async () => {
    const c = await RawOptions.open(peerSrv.port);
    c.send(Opt.STARTTLS);
    expect((await c.reply()).replyType).toBe(Rep.ACK);
    await c.startTls(tls.caPem, rogueClient).catch(() => undefined);
    c.send(Opt.LIST);
    expect(await c.closedWithin(3000)).toBe(true);
  });

  test("checkPeer: no certificate, a foreign one, an unauthorized one", () => {
    const m = { ...tls, verifyPeer: true };
    expect(checkPeer(m, { authorized: false, getPeerX509Certificate: () => undefined })).toMatch(/no client certificate/);
    expect(checkPeer(m, { authorized: true, getPeerX509Certificate: () => new X509Certificate(rogueClient.certPem) })).toMatch(/not signed by the NBD CA/);
    const good = new X509Certificate(readFileSync(join(withCert, "client-cert.pem"), "utf8"));
    expect(checkPeer(m, { authorized: false, getPeerX509Certificate: () => good })).toMatch(/did not authorize/);
    expect(checkPeer(m, { authorized: true, getPeerX509Certificate: () => good })).toBeNull();
    expect(checkPeer(m, { authorized: true, getPeerX509Certificate: () => good }, Date.now() + 20 * 365 * 86400_000)).toMatch(/not now/);
  });

  test("checkPeer: another SDC's server certificate (serverAuth only) is no client certificate; this SDC's own is (the local probe)", () => {
    const m = { ...tls, verifyPeer: true };
    const ca = { certPem: tls.caPem, keyPem: readFileSync(join(dir, "sdc-tls", "ca-key.pem"), "utf8") };
    const otherSdc = generateSignedCert({ commonName: "pf-nbd sdc other", hosts: ["127.0.0.9"], issuer: ca, usage: "server" });
    const other = new X509Certificate(otherSdc.certPem);
    expect(other.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    expect(checkPeer(m, { authorized: true, getPeerX509Certificate: () => other })).toMatch(/not for clientAuth/);
    const own = new X509Certificate(tls.certPem);
    expect(checkPeer(m, { authorized: false, getPeerX509Certificate: () => own })).toBeNull();
  });

  test("checkPeer: a revoked certificate is refused by serial + issuer or by fingerprint; listeners hear only of new entries", () => {
    const good = new X509Certificate(readFileSync(join(withCert, "client-cert.pem"), "utf8"));
    const caFp = new X509Certificate(tls.caPem).fingerprint256;
    const revocations = new NbdRevocations();
    const heard: string[][] = [];
    revocations.onRevoked((added) => heard.push(added.map((e) => e.name)));
    const m = { ...tls, verifyPeer: true, revocations };
    const peer = { authorized: true, getPeerX509Certificate: () => good };
    const bySerial = { serialNumber: good.serialNumber.toLowerCase(), caFingerprint256: caFp, fingerprint256: "other", name: "by-serial", revokedAtMs: 1 };
    revocations.update([bySerial]);
    expect(checkPeer(m, peer)).toMatch(/\(serial [0-9A-F]+\) was revoked at 1970-01-01T00:00:00.001Z \(NBD client certificate by-serial\)/);
    // the same serial from another CA is another certificate
    revocations.update([{ ...bySerial, caFingerprint256: "another CA" }]);
    expect(checkPeer(m, peer)).toBeNull();
    revocations.update([{ serialNumber: "01", caFingerprint256: "another CA", fingerprint256: good.fingerprint256, name: "by-fingerprint", revokedAtMs: 2 }]);
    expect(checkPeer(m, peer)).toMatch(/revoked/);
    revocations.update([{ serialNumber: "01", caFingerprint256: "another CA", fingerprint256: good.fingerprint256, name: "by-fingerprint", revokedAtMs: 2 }]);
    revocations.update([]);
    expect(checkPeer(m, peer)).toBeNull();
    expect(heard).toEqual([["by-serial"], ["by-fingerprint"]]);
  });

  test("a newly revoked certificate's open session is closed; another certificate's session goes on; a new one with it is refused", async () => {
    const ca = { certPem: tls.caPem, keyPem: readFileSync(join(dir, "sdc-tls", NbdTlsFiles.caKey), "utf8") };
    const lost = generateSignedCert({ commonName: "pf-nbd-client lost", hosts: [], issuer: ca });
    const kept = generateSignedCert({ commonName: "pf-nbd-client kept", hosts: [], issuer: ca });
    const revocations = new NbdRevocations();
    const srv = await startNbdServer({ host: "127.0.0.1", port: 0, registry, tls: { ...tls, verifyPeer: true, revocations } });
    try {
      const tlsUp = async (cert: SelfSignedCert): Promise<RawOptions> => {
        const c = await RawOptions.open(srv.port);
        c.send(Opt.STARTTLS);
        expect((await c.reply()).replyType).toBe(Rep.ACK);
        await c.startTls(tls.caPem, cert);
        return c;
      };
      const a = await tlsUp(lost);
      const b = await tlsUp(kept);
      for (const c of [a, b]) {
        c.send(Opt.LIST);
        expect((await c.reply()).replyType).toBe(Rep.SERVER);
        expect((await c.reply()).replyType).toBe(Rep.ACK);
      }
      const x = new X509Certificate(lost.certPem);
      revocations.update([{ serialNumber: x.serialNumber, caFingerprint256: new X509Certificate(tls.caPem).fingerprint256, fingerprint256: x.fingerprint256, name: "lost", revokedAtMs: Date.now() }]);
      expect(await a.closedWithin(2000)).toBe(true);
      expect(b.closed).toBe(false);
      b.send(Opt.LIST);
      expect((await b.reply()).replyType).toBe(Rep.SERVER);
      // a map refresh with the same list closes nothing more
      revocations.update([{ serialNumber: x.serialNumber, caFingerprint256: "x", fingerprint256: x.fingerprint256, name: "lost", revokedAtMs: 1 }]);
      expect(await b.closedWithin(300)).toBe(false);
      const again = await RawOptions.open(srv.port);
      again.send(Opt.STARTTLS);
      expect((await again.reply()).replyType).toBe(Rep.ACK);
      await again.startTls(tls.caPem, lost).catch(() => undefined);
      again.send(Opt.LIST);
      expect(await again.closedWithin(3000)).toBe(true);
    } finally {
      await srv.stop();
    }
  });
});

describe("the certificate directory and the listen address", () => {
  test("a server certificate from another CA, or a CA without server files or ca-key.pem, is a clear error", () => {
    const d = join(dir, "bad1");
    mkdirSync(d);
    const other = generateSelfSignedCert({ commonName: "x", hosts: [] });
    const leaf = generateSignedCert({ commonName: "y", hosts: ["127.0.0.1"], issuer: other });
    writeFileSync(join(d, NbdTlsFiles.caCert), tls.caPem);
    writeFileSync(join(d, NbdTlsFiles.serverCert), leaf.certPem);
    writeFileSync(join(d, NbdTlsFiles.serverKey), leaf.keyPem);
    expect(() => loadNbdTls({ mode: "require", dir: d, listenHost: "127.0.0.1", verifyPeer: false })).toThrow(/is not signed by/);
    const d2 = join(dir, "bad2");
    mkdirSync(d2);
    writeFileSync(join(d2, NbdTlsFiles.caCert), tls.caPem);
    let err: unknown;
    try {
      loadNbdTls({ mode: "on", dir: d2, listenHost: "127.0.0.1", verifyPeer: false });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PfError);
    expect((err as PfError).message).toContain(NbdTlsFiles.caKey);
  });

  test("with ca-key.pem the SDC issues a server certificate naming its listen address, and reissues when the address changes", () => {
    const d = join(dir, "issue");
    const a = loadNbdTls({ mode: "require", dir: d, listenHost: "127.0.0.9", verifyPeer: false });
    expect(new X509Certificate(a.certPem).checkIP("127.0.0.9")).toBe("127.0.0.9");
    const again = loadNbdTls({ mode: "require", dir: d, listenHost: "127.0.0.9", verifyPeer: false });
    expect(again.certPem).toBe(a.certPem); // kept across restarts
    const moved = loadNbdTls({ mode: "require", dir: d, listenHost: "127.0.0.10", verifyPeer: false });
    expect(moved.certPem).not.toBe(a.certPem);
    expect(new X509Certificate(moved.certPem).checkIP("127.0.0.10")).toBe("127.0.0.10");
    expect(moved.caPem).toBe(a.caPem);
  });

  test("plaintext NBD beyond loopback warns unless --nbd-tls=off was said explicitly", () => {
    expect(warnPlaintextExposure("127.0.0.1", "off", false)).toBeNull();
    expect(warnPlaintextExposure("localhost", "off", false)).toBeNull();
    expect(warnPlaintextExposure("10.1.2.3", "off", false)).toMatch(/without TLS.*--nbd-tls=require/);
    expect(warnPlaintextExposure("0.0.0.0", "off", false)).toMatch(/without TLS/);
    expect(warnPlaintextExposure("10.1.2.3", "off", true)).toBeNull();
    expect(warnPlaintextExposure("10.1.2.3", "require", false)).toBeNull();
  });
});

describe("pf doctor's and pf up's NBD probe over TLS (src/cmd/nbd_probe.ts)", () => {
  test("STARTTLS, then LIST: it lists the exports once the certificate verified and names the host", async () => {
    expect(await listNbdExports("127.0.0.1", requireSrv.port, { caPem: tls.caPem, serverName: "127.0.0.1" })).toContain("vol");
  });

  test("another CA, or a certificate that does not name the host: refused, saying which CA and why", async () => {
    const other = generateSelfSignedCert({ commonName: "not the SDC's CA", hosts: [] });
    await expect(listNbdExports("127.0.0.1", requireSrv.port, { caPem: other.certPem, caName: "the test's other CA" })).rejects.toThrow(/trusting the test's other CA/);
    await expect(listNbdExports("127.0.0.1", requireSrv.port, { caPem: tls.caPem, serverName: "nbd.elsewhere.example" })).rejects.toThrow(/nbd\.elsewhere\.example/);
    // without TLS against require: the TLS_REQD refusal, named
    await expect(listNbdExports("127.0.0.1", requireSrv.port)).rejects.toThrow(/requires TLS/);
  });
});
