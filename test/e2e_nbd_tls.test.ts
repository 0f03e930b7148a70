// NBD over TLS end to end, with the compiled binary and certificates issued by the cluster:
// `pf up` with `sdc: { nbdTls: require, nbdTlsVerifyPeer: true }` and no certificate directory of
// the operator's. The SDC gets its NBD server certificate from the cluster NBD CA at start (and
// writes the nbdkit layout in DATA_DIR/sdc/nbd-tls); pf up's export probe goes through STARTTLS;
// an operator gets client material with `scli --issue_nbd_client_certificate` (key made locally).
// Then real clients (nbdinfo nbds://, qemu-io and qemu-img with tls-creds-x509, fio's nbd engine
// through nbdkit's nbd plugin as the TLS client)
// write and read through the SDSs over TLS; a plaintext client, a client without a certificate and
// one whose certificate comes from another CA are refused; pf doctor's NBD probe does STARTTLS and
// verifies against the cluster NBD CA, and says what failed when given a CA that does not fit.
// Revocation: a client certificate revoked with scli is refused at its next connection (the SDC's
// log names "revoked"), another one still works, and an open session of the revoked one (fio
// running through nbdkit) is cut within seconds of the revocation.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateSelfSignedCert, generateSignedCert } from "../src/proto/tls_cert.ts";
import { PF_BIN, TestCluster } from "./helpers/cluster.ts";
import { run, runFio, runOk, runQemuImg } from "./helpers/real_clients.ts";

const MiB = 1024 * 1024;
const T = 180_000;
let c: TestCluster;
/** the client material scli writes (ca-cert.pem, client-cert.pem, client-key.pem) */
let certs: string;
let sdcTls: string;

beforeAll(async () => {
  c = await TestCluster.create({ volumes: [{ name: "sec1", size: "64MiB" }], sdcYaml: "nbdTls: require, nbdTlsVerifyPeer: true" });
  await c.start();
  sdcTls = join(c.dataDir, "sdc", "nbd-tls");
  certs = join(c.dir, "client-certs");
  await c.login();
  const r = await c.scli(["--issue_nbd_client_certificate", "--name", "e2e-client", "--out_dir", certs]);
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("Issued NBD client certificate e2e-client");
}, T);

afterAll(async () => {
  await c?.stop();
});

const nbds = (dir: string) => `nbds://127.0.0.1:${c.ports.nbd}/sec1?tls-certificates=${dir}`;
const opts = () => `driver=nbd,host=127.0.0.1,port=${c.ports.nbd},export=sec1,tls-creds=tls0`;
const tlsObject = (dir: string) => ["--object", `tls-creds-x509,id=tls0,dir=${dir},endpoint=client`];

describe("certificates issued by the cluster", () => {
  test("the SDC's server certificate comes from the cluster NBD CA, which scli --query_nbd_ca shows", async () => {
    expect(existsSync(join(sdcTls, "cluster-issued.json"))).toBe(true);
    expect(existsSync(join(sdcTls, "ca-key.pem"))).toBe(false); // the CA key stays in the MDM
    const caFile = join(c.dir, "nbd-ca.pem");
    const q = await c.scli(["--query_nbd_ca", "--out", caFile]);
    expect(q.code).toBe(0);
    expect(q.stdout).toContain("Cluster NBD CA");
    const ca = readFileSync(caFile, "utf8");
    expect(readFileSync(join(sdcTls, "ca-cert.pem"), "utf8")).toBe(ca);
    expect(readFileSync(join(certs, "ca-cert.pem"), "utf8")).toBe(ca);
    const server = new X509Certificate(readFileSync(join(sdcTls, "server-cert.pem")));
    expect(server.checkIssued(new X509Certificate(ca))).toBe(true);
    expect(server.checkIP("127.0.0.1")).toBe("127.0.0.1");
    // the client key was made by scli, here, and only its certificate came back
    expect((await Bun.file(join(certs, "client-key.pem")).text()).includes("PRIVATE KEY")).toBe(true);
    const client = new X509Certificate(readFileSync(join(certs, "client-cert.pem")));
    expect(client.subject).toContain("pf-nbd-client e2e-client");
    expect(client.verify(new X509Certificate(ca).publicKey)).toBe(true);
  }, T);

  test("a second issue into the same directory is refused (the key there is not overwritten)", async () => {
    const before = readFileSync(join(certs, "client-key.pem"), "utf8");
    const r = await c.scli(["--issue_nbd_client_certificate", "--name", "again", "--out_dir", certs]);
    expect(r.code).not.toBe(0);
    expect(r.stderr + r.stdout).toContain("client-key.pem exists");
    expect(readFileSync(join(certs, "client-key.pem"), "utf8")).toBe(before);
  }, T);
});

describe("real clients with the scli material", () => {
  test("pf up prints an nbds:// URI; nbdinfo with tls-certificates from scli says TLS", async () => {
    expect(c.output).toContain(`nbds://127.0.0.1:${c.ports.nbd}/sec1`);
    const info = await runOk(["nbdinfo", "--json", nbds(certs)]);
    expect((JSON.parse(info.stdout) as { TLS?: boolean }).TLS).toBe(true);
  }, T);

  test("refused: a plaintext client, a client with the CA but no certificate, a certificate of another CA", async () => {
    const plain = await run(["nbdinfo", `nbd://127.0.0.1:${c.ports.nbd}/sec1`]);
    expect(plain.exitCode).not.toBe(0);
    const caOnly = join(c.dir, "ca-only");
    mkdirSync(caOnly, { recursive: true });
    writeFileSync(join(caOnly, "ca-cert.pem"), readFileSync(join(certs, "ca-cert.pem")));
    expect((await run(["nbdinfo", "--size", nbds(caOnly)])).exitCode).not.toBe(0);
    // trusts the cluster CA (so the server passes) but shows a client certificate of its own CA
    const foreign = join(c.dir, "foreign");
    mkdirSync(foreign, { recursive: true });
    const otherCa = generateSelfSignedCert({ commonName: "not-the-cluster", hosts: [] });
    const mine = generateSignedCert({ commonName: "pf-nbd-client intruder", hosts: [], issuer: otherCa, validDays: 30 });
    writeFileSync(join(foreign, "ca-cert.pem"), readFileSync(join(certs, "ca-cert.pem")));
    writeFileSync(join(foreign, "client-cert.pem"), mine.certPem);
    writeFileSync(join(foreign, "client-key.pem"), mine.keyPem, { mode: 0o600 });
    expect((await run(["nbdinfo", "--size", nbds(foreign)])).exitCode).not.toBe(0);
    expect((await run(["qemu-io", ...tlsObject(foreign), "--image-opts", opts(), "-c", "read 0 4k"])).exitCode).not.toBe(0);
    // the SDC refused both nbdinfo clients itself, after the handshake, and said why: GnuTLS does
    // not even send a certificate whose issuer is not among the CAs the SDC asks for (pf's check of
    // a foreign certificate that is sent: test/nbd_tls.test.ts, "another CA"); qemu checks its own
    // client certificate against ca-cert.pem and gives up before it connects
    await Bun.sleep(300);
    expect(c.output.split("TLS refused: no client certificate").length - 1).toBeGreaterThanOrEqual(2);
    // the server is unharmed
    await runOk(["nbdinfo", "--size", nbds(certs)]);
  }, T);

  test("qemu-io over TLS: patterns written through the SDSs read back", async () => {
    const r = await run(["qemu-io", ...tlsObject(certs), "--image-opts", opts(), "-c", "write -P 0x5e 0 4M", "-c", "write -P 0xa1 17M 1M", "-c", "read -P 0x5e 0 4M", "-c", "read -P 0xa1 17M 1M"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout + r.stderr).not.toMatch(/fail/i);
  }, T);

  test("qemu-img convert to the export over TLS, then qemu-img compare says identical", async () => {
    const src = join(c.dir, "src.img");
    const buf = Buffer.alloc(8 * MiB);
    for (let i = 0; i < buf.length; i += 4096) buf.writeUInt32LE((i * 2654435761) >>> 0, i);
    writeFileSync(src, buf);
    await runQemuImg(["convert", "-n", ...tlsObject(certs), "-f", "raw", "--target-image-opts", src, `${opts()}`]);
    const cmp = await run([
      "qemu-img",
      "compare",
      ...tlsObject(certs),
      "--image-opts",
      `driver=raw,file.driver=file,file.filename=${src}`,
      `driver=raw,size=${8 * MiB},file.driver=nbd,file.host=127.0.0.1,file.port=${c.ports.nbd},file.export=sec1,file.tls-creds=tls0`,
    ]);
    expect(cmp.stdout).toContain("Images are identical");
    expect(cmp.exitCode).toBe(0);
  }, T);

  test("fio through nbdkit's nbd plugin (a TLS client with the scli directory) with crc32c verify through the SDSs", async () => {
    // fio's nbd engine takes only a URI, and libnbd reads $HOME/.pki/libnbd only when not root
    // (root: /etc/pki/libnbd), so the client material reaches fio through nbdkit: plaintext on a
    // private Unix socket, TLS with the client certificate towards the SDC
    const sock = join(c.dir, "nbdkit-tls.sock");
    const proxy = Bun.spawn(["nbdkit", "-f", "--exit-with-parent", "-U", sock, "nbd", "hostname=127.0.0.1", `port=${c.ports.nbd}`, "export=sec1", "tls=require", `tls-certificates=${certs}`], { stdout: "ignore", stderr: "pipe" });
    try {
      for (let i = 0; i < 100 && !existsSync(sock); i++) await Bun.sleep(50);
      expect(existsSync(sock)).toBe(true);
      const f = await runFio(["--name=tls", "--ioengine=nbd", `--uri=nbd+unix:///?socket=${sock}`, "--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=8M", "--offset=32M", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0"]);
      expect(f.json.jobs[0]?.error).toBe(0);
      expect(f.json.jobs[0]?.write.io_bytes).toBe(8 * MiB);
    } finally {
      proxy.kill();
      await proxy.exited;
    }
  }, T);
});

interface DoctorRow {
  name: string;
  status: string;
  detail: string;
  fix?: string;
}

async function doctorNbdRow(configFile: string): Promise<DoctorRow> {
  const proc = Bun.spawn([PF_BIN, "doctor", configFile, "--data-dir", c.dataDir, "--json"], { stdout: "pipe", stderr: "pipe" });
  const [stdout] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  const rows = (JSON.parse(stdout) as { checks: DoctorRow[] }).checks;
  const row = rows.find((r) => r.name.startsWith("NBD server"));
  if (!row) throw new Error(`no NBD row in ${stdout}`);
  return row;
}

describe("pf doctor's NBD probe over TLS", () => {
  test("STARTTLS, the SDC's certificate verified against the cluster NBD CA from the MDM, exports listed", async () => {
    const row = await doctorNbdRow(c.configFile);
    expect(row.status).toBe("ok");
    expect(row.detail).toContain("over TLS");
    expect(row.detail).toContain("cluster NBD CA (from the MDM)");
    expect(row.detail).toContain("sec1");
  }, T);

  test("a CA that did not sign the SDC's certificate: failed, saying which CA and why", async () => {
    const wrong = join(c.dir, "wrong-ca");
    mkdirSync(wrong, { recursive: true });
    writeFileSync(join(wrong, "ca-cert.pem"), generateSelfSignedCert({ commonName: "some-other-ca", hosts: [] }).certPem);
    const file = join(c.dir, "doctor-wrong-ca.yaml");
    const yaml = readFileSync(c.configFile, "utf8").replace("nbdTls: require", `nbdTls: require, nbdTlsDir: ${wrong}`);
    expect(yaml).toContain(wrong);
    writeFileSync(file, yaml);
    const row = await doctorNbdRow(file);
    expect(row.status).toBe("failed");
    expect(row.detail).toContain("NBD over TLS fails");
    expect(row.detail).toContain(join(wrong, "ca-cert.pem"));
    expect(row.fix ?? "").toContain("server certificate");
  }, T);
});

test("pf sdc refuses TLS flags that do not fit together, before it contacts the MDM", async () => {
  const cases: [string[], string][] = [
    [["--nbd-tls", "bogus"], "--nbd-tls bogus: use off, on or require"],
    [["--nbd-tls-verify-peer"], "--nbd-tls-verify-peer needs --nbd-tls on or require"],
    [["--nbd-tls", "require"], "--nbd-tls require needs --nbd-tls-dir"],
  ];
  for (const [flags, says] of cases) {
    const r = await run([c.bin, "sdc", ...flags, "--control", "none", "--mdm", "https://127.0.0.1:1"], { cwd: c.dir });
    expect(r.exitCode).toBe(2);
    expect(r.stderr + r.stdout).toContain(says);
  }
}, T);

describe("revoking a client certificate (scli --revoke_nbd_client_certificate)", () => {
  const issue = async (name: string): Promise<{ dir: string; serial: string }> => {
    const dir = join(c.dir, `client-${name}`);
    const r = await c.scli(["--issue_nbd_client_certificate", "--name", name, "--out_dir", dir]);
    expect(r.code).toBe(0);
    const serial = /serial ([0-9A-F]+)/.exec(r.stdout)?.[1];
    expect(serial).toBeDefined();
    return { dir, serial: serial ?? "" };
  };

  test("a revoked certificate is refused and its open fio session is cut within seconds; another certificate still works", async () => {
    const lost = await issue("lost-laptop");
    const keeper = await issue("keeper");
    await runOk(["nbdinfo", "--size", nbds(lost.dir)]);
    await runOk(["nbdinfo", "--size", nbds(keeper.dir)]);
    const listed = await c.scli(["--query_nbd_client_certificates"]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(`NBD client certificate lost-laptop: serial ${lost.serial}, valid`);

    // an open session with the certificate about to be revoked: fio through nbdkit (TLS towards the SDC)
    const sock = join(c.dir, "nbdkit-lost.sock");
    const proxy = Bun.spawn(["nbdkit", "-f", "--exit-with-parent", "-U", sock, "nbd", "hostname=127.0.0.1", `port=${c.ports.nbd}`, "export=sec1", "tls=require", `tls-certificates=${lost.dir}`], { stdout: "ignore", stderr: "pipe" });
    try {
      for (let i = 0; i < 100 && !existsSync(sock); i++) await Bun.sleep(50);
      expect(existsSync(sock)).toBe(true);
      const fio = run(["fio", "--name=held", "--ioengine=nbd", `--uri=nbd+unix:///?socket=${sock}`, "--rw=randrw", "--bs=4k", "--iodepth=8", "--size=8M", "--offset=40M", "--time_based", "--runtime=90", "--output-format=json"], { timeoutMs: 120_000 });
      let fioDone = false;
      void fio.then(() => (fioDone = true));
      await Bun.sleep(2500);
      expect(fioDone).toBe(false); // fio is running its IO through the revoked-to-be session
      const t0 = performance.now();
      const rev = await c.scli(["--revoke_nbd_client_certificate", "--serial", lost.serial, "--reason", "laptop lost"]);
      expect(rev.code).toBe(0);
      expect(rev.stdout).toContain(`Revoked NBD client certificate lost-laptop (serial ${lost.serial})`);
      const f = await fio;
      const cutMs = performance.now() - t0;
      expect(f.exitCode).not.toBe(0); // its IO failed: the SDC closed the session
      expect(cutMs).toBeLessThan(10_000);
      console.info(`e2e_nbd_tls: the revoked certificate's open fio session was cut ${cutMs.toFixed(0)} ms after scli --revoke_nbd_client_certificate`);
    } finally {
      proxy.kill();
      await proxy.exited;
    }
    expect(c.output).toMatch(/\(serial [0-9A-F]+\) was revoked at [^;]+; closing it/);

    // a new connection with it is refused by the SDC, which says so
    expect((await run(["nbdinfo", "--size", nbds(lost.dir)])).exitCode).not.toBe(0);
    await Bun.sleep(300);
    expect(c.output).toMatch(new RegExp(`TLS refused: client certificate "[^"]*pf-nbd-client lost-laptop" \\(serial ${lost.serial}\\) was revoked`));
    // the other certificate is unaffected, data written earlier reads back through it
    await runOk(["nbdinfo", "--size", nbds(keeper.dir)]);
    const q = await run(["qemu-io", ...tlsObject(keeper.dir), "--image-opts", opts(), "-c", "write -P 0x3c 60M 1M", "-c", "read -P 0x3c 60M 1M"]);
    expect(q.exitCode).toBe(0);
    const after = await c.scli(["--query_nbd_client_certificates"]);
    expect(after.stdout).toContain(`NBD client certificate lost-laptop: serial ${lost.serial}, revoked`);
    expect(after.stdout).toContain("laptop lost");
    expect(after.stdout).toMatch(/NBD client certificate keeper: serial [0-9A-F]+, valid/);
  }, T);

  test("revoke by name; an unknown serial is NOT_FOUND; the two selectors exclude each other", async () => {
    const gone = await issue("gone-employee");
    await runOk(["nbdinfo", "--size", nbds(gone.dir)]);
    const r = await c.scli(["--revoke_nbd_client_certificate", "--name", "gone-employee"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Revoked NBD client certificate gone-employee (serial ${gone.serial})`);
    // the map watch brings the list to the SDC within about a round trip
    let refused = false;
    for (let i = 0; i < 50 && !refused; i++) {
      refused = (await run(["nbdinfo", "--size", nbds(gone.dir)])).exitCode !== 0;
      if (!refused) await Bun.sleep(100);
    }
    expect(refused).toBe(true);
    const unknown = await c.scli(["--revoke_nbd_client_certificate", "--serial", "0123ABCD"]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr + unknown.stdout).toContain("no NBD client certificate with serial 0123ABCD");
    const both = await c.scli(["--revoke_nbd_client_certificate", "--serial", gone.serial, "--name", "gone-employee"]);
    expect(both.code).not.toBe(0);
  }, T);
});
