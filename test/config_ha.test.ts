// The cluster YAML's HA keys (src/proto/cluster_config.ts): mdm.etcd.endpoints lets several hosts
// run an MDM; the file must then give the shared secret and admin password; every mistake names
// the file, the line and the field.

import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseClusterConfig } from "../src/proto/cluster_config.ts";

const base = (mdm: string, cluster = "{ name: c, secret: a-long-shared-secret-1234, adminPassword: pw123456 }") =>
  [`cluster: ${cluster}`, `mdm: ${mdm}`, "hosts:", "  - { name: a, address: 10.0.0.1, mdm: true }", "  - { name: b, address: 10.0.0.2, mdm: true }", ""].join("\n");

function errorOf(text: string): string {
  try {
    parseClusterConfig(text, "c.yaml");
  } catch (e) {
    return (e as Error).message;
  }
  return "(parsed)";
}

test("the shipped HA example parses: three MDM hosts on three etcd endpoints", () => {
  const c = parseClusterConfig(readFileSync(join(import.meta.dir, "..", "configs", "ha-three-hosts.yaml"), "utf8"), "ha-three-hosts.yaml");
  expect(c.hosts.filter((h) => h.mdm)).toHaveLength(3);
  expect(c.mdm.etcd?.endpoints).toHaveLength(3);
});

test("two MDM hosts need mdm.etcd; with it they parse", () => {
  expect(errorOf(base("{ port: 6611 }"))).toContain("hosts: exactly one host must have mdm: true (found 2); several MDMs need mdm.etcd");
  const c = parseClusterConfig(base("{ port: 6611, etcd: { endpoints: [http://10.0.0.1:2379] } }"), "c.yaml");
  expect(c.mdm.etcd).toEqual({ endpoints: ["http://10.0.0.1:2379"] });
});

test("HA mistakes name the field", () => {
  expect(errorOf(base("{ etcd: { endpoints: [] } }"))).toMatch(/^c\.yaml:2: mdm\.etcd\.endpoints: give at least one etcd client URL/);
  expect(errorOf(base("{ etcd: { endpoint: [x] } }"))).toContain("mdm.etcd");
  expect(errorOf(base("{ etcd: { endpoints: [http://e:2379] } }", "{ name: c, adminPassword: pw123456 }"))).toContain("cluster.secret: with mdm.etcd");
  expect(errorOf(base("{ etcd: { endpoints: [http://e:2379] } }", "{ name: c, secret: a-long-shared-secret-1234 }"))).toContain("cluster.adminPassword: with mdm.etcd");
});
