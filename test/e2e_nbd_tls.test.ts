// NBD over TLS end to end, with the compiled binary: `pf up` with `sdc: { nbdTls: require }` (the
// SDC makes its NBD CA and server certificate in DATA_DIR/sdc/nbd-tls; pf up's export probe itself
// goes through STARTTLS), then real clients write and read through the SDSs over TLS, and a
// plaintext client is refused.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestCluster } from "./helpers/cluster.ts";
import { run, runFio, runOk } from "./helpers/real_clients.ts";

const MiB = 1024 * 1024;
const T = 180_000;
let c: TestCluster;
let certs: string;

beforeAll(async () => {
  c = await TestCluster.create({ volumes: [{ name: "sec1", size: "64MiB" }], sdcYaml: "nbdTls: require" });
  await c.start();
  const sdcTls = join(c.dataDir, "sdc", "nbd-tls");
  expect(existsSync(join(sdcTls, "server-cert.pem"))).toBe(true);
  certs = join(c.dir, "client-certs");
  mkdirSync(join(certs, ".pki", "libnbd"), { recursive: true });
  writeFileSync(join(certs, "ca-cert.pem"), readFileSync(join(sdcTls, "ca-cert.pem")));
  writeFileSync(join(certs, ".pki", "libnbd", "ca-cert.pem"), readFileSync(join(sdcTls, "ca-cert.pem")));
}, T);

afterAll(async () => {
  await c?.stop();
});

const opts = () => `driver=nbd,host=127.0.0.1,port=${c.ports.nbd},export=sec1,tls-creds=tls0`;
const tlsObject = () => ["--object", `tls-creds-x509,id=tls0,dir=${certs},endpoint=client`];

test("pf up prints an nbds:// URI and the export is served over TLS only", async () => {
  expect(c.output).toContain(`nbds://127.0.0.1:${c.ports.nbd}/sec1`);
  const info = await runOk(["nbdinfo", "--json", `nbds://127.0.0.1:${c.ports.nbd}/sec1?tls-certificates=${certs}`]);
  expect((JSON.parse(info.stdout) as { TLS?: boolean }).TLS).toBe(true);
  const plain = await run(["nbdinfo", `nbd://127.0.0.1:${c.ports.nbd}/sec1`]);
  expect(plain.exitCode).not.toBe(0);
}, T);

test("qemu-io over TLS: patterns written through the SDSs read back", async () => {
  const r = await run(["qemu-io", ...tlsObject(), "--image-opts", opts(), "-c", "write -P 0x5e 0 4M", "-c", "write -P 0xa1 17M 1M", "-c", "read -P 0x5e 0 4M", "-c", "read -P 0xa1 17M 1M"]);
  expect(r.exitCode).toBe(0);
  expect(r.stdout + r.stderr).not.toMatch(/fail/i);
}, T);

test("fio over nbds:// with crc32c verify through the SDSs", async () => {
  const f = await runFio(
    ["--name=tls", "--ioengine=nbd", `--uri=nbds://127.0.0.1:${c.ports.nbd}/sec1`, "--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=8M", "--offset=32M", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0"],
    { env: { HOME: certs } },
  );
  expect(f.json.jobs[0]?.write.io_bytes).toBe(8 * MiB);
}, T);

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
