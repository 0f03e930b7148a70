// The cluster YAML's HA keys (src/proto/cluster_config.ts): mdm.etcd.endpoints lets several hosts
// run an MDM; the file must then give the shared secret and admin password; every mistake names
// the file, the line and the field.

import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { embeddedEtcdHosts, etcdEndpointsOf, parseClusterConfig } from "../src/proto/cluster_config.ts";
import { planHost } from "../src/cmd/host_plan.ts";

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

test("mdm.etcd.embedded: pf up runs etcd on the MDM hosts (and hosts with etcd: true); endpoints default to their client URLs", () => {
  const three = [
    "cluster: { name: c, secret: a-long-shared-secret-1234, adminPassword: pw123456 }",
    "mdm: { etcd: { embedded: true, clientPort: 2479, peerPort: 2480 } }",
    "hosts:",
    "  - { name: a, address: 10.0.0.1, mdm: true }",
    "  - { name: b, address: 10.0.0.2, mdm: true }",
    "  - { name: tb, address: 10.0.0.3, etcd: true }",
    "",
  ].join("\n");
  const c = parseClusterConfig(three, "c.yaml");
  expect(embeddedEtcdHosts(c).map((h) => h.name)).toEqual(["a", "b", "tb"]);
  // secured by default (mdm.etcd.tls auto: test/etcd_auto_tls.test.ts): https client and peer URLs
  expect(etcdEndpointsOf(c)).toEqual(["https://10.0.0.1:2479", "https://10.0.0.2:2479", "https://10.0.0.3:2479"]);
  const plan = planHost(c, c.hosts[2]!, "/var/lib/pf", "c.yaml");
  expect(plan.etcd).toMatchObject({ name: "tb", dataDir: "/var/lib/pf/etcd", clientUrl: "https://10.0.0.3:2479", peerUrl: "https://10.0.0.3:2480", initialCluster: "a=https://10.0.0.1:2480,b=https://10.0.0.2:2480,tb=https://10.0.0.3:2480", bin: "etcd" });
  expect(plan.ports.filter((p) => p.role === "etcd").map((p) => p.port)).toEqual([2479, 2480]);
  // given endpoints win (e.g. a load balancer in front of the members)
  expect(etcdEndpointsOf(parseClusterConfig(three.replace("embedded: true,", "embedded: true, endpoints: [http://lb:2379],"), "c.yaml"))).toEqual(["http://lb:2379"]);
  expect(planHost(c, c.hosts[0]!, "/d", "c.yaml").etcd?.name).toBe("a");
});

test("embedded etcd mistakes name the field", () => {
  expect(errorOf(base("{ etcd: { clusterName: x } }"))).toContain("mdm.etcd.endpoints: give the etcd client URLs");
  expect(errorOf(base("{ etcd: { embedded: true } }"))).toContain("embedded etcd needs an odd number of members (1, 3 or 5), found 2");
  expect(errorOf(base("{ etcd: { embedded: true, clientPort: 2400, peerPort: 2400 } }").replace("{ name: b, address: 10.0.0.2, mdm: true }", "{ name: b, address: 10.0.0.2, mdm: true, etcd: false }"))).toContain("the etcd peer port must differ");
  const hostEtcd = base("{ etcd: { endpoints: [http://e:2379] } }").replace("{ name: b, address: 10.0.0.2, mdm: true }", "{ name: b, address: 10.0.0.2, mdm: true, etcd: true }");
  expect(errorOf(hostEtcd)).toContain("hosts[].etcd needs mdm.etcd.embedded: true");
});
