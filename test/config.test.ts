// Cluster YAML: the shipped files parse; a wrong file gets an error naming the line and field.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseClusterConfig } from "../src/proto/cluster_config.ts";
import { parseHostPort, parseSizeBytes } from "../src/proto/sizes.ts";
import { PfError } from "../src/proto/errors.ts";

const root = join(import.meta.dir, "..");

function errorOf(text: string): string {
  try {
    parseClusterConfig(text, "c.yaml");
  } catch (e) {
    expect(e).toBeInstanceOf(PfError);
    return (e as PfError).message;
  }
  throw new Error("expected the file to be refused");
}

const minimal = `hosts:
  - name: h1
    address: 127.0.0.1
    mdm: true
    sds:
      - { name: s1, pool: pd1/sp1, devices: [{ path: d.img, size: 1GiB }] }
protectionDomains:
  - name: pd1
    storagePools:
      - name: sp1
`;

describe("cluster YAML", () => {
  test("shipped configs parse", () => {
    const one = parseClusterConfig(readFileSync(join(root, "configs/one-host.yaml"), "utf8"), "one-host.yaml");
    expect(one.hosts[0]!.sds).toHaveLength(3);
    expect(one.hosts[0]!.sds[0]!.devices[0]!.size).toBe(1024 ** 3);
    expect(one.volumes[0]!.name).toBe("vol1");
    const three = parseClusterConfig(readFileSync(join(root, "configs/three-hosts.yaml"), "utf8"), "three-hosts.yaml");
    expect(three.hosts.map((h) => h.name)).toEqual(["a", "b", "c"]);
    expect(three.protectionDomains[0]!.faultSets).toHaveLength(3);
  });

  test("defaults fill in", () => {
    const c = parseClusterConfig(minimal, "m.yaml");
    expect(c.mdm.port).toBe(6611);
    expect(c.hosts[0]!.sds[0]!.port).toBe(7072);
    expect(c.protectionDomains[0]!.storagePools[0]!.sparePercentage).toBe(10);
  });

  test("wrong type names field and line", () => {
    const msg = errorOf(minimal.replace("mdm: true", "mdm: yes-please"));
    expect(msg).toContain("c.yaml:4");
    expect(msg).toContain("hosts.0.mdm");
  });

  test("bad size names field and line", () => {
    const msg = errorOf(minimal.replace("size: 1GiB", "size: lots"));
    expect(msg).toContain("c.yaml:6");
    expect(msg).toContain("size");
    expect(msg).toContain("not a size");
  });

  test("unknown field is refused", () => {
    const msg = errorOf(minimal.replace("    mdm: true", "    mdm: true\n    colour: blue"));
    expect(msg).toContain("colour");
  });

  test("undefined pool is refused with its path", () => {
    const msg = errorOf(minimal.replace("pool: pd1/sp1", "pool: pd1/nope"));
    expect(msg).toContain("pd1/nope");
    expect(msg).toContain("hosts.0.sds.0.pool");
  });

  test("no MDM host is refused", () => {
    expect(errorOf(minimal.replace("    mdm: true\n", ""))).toContain("exactly one host must have mdm: true");
  });

  test("YAML syntax error names the line", () => {
    expect(errorOf("hosts:\n  - name: [unclosed\n")).toMatch(/c\.yaml:\d+:\d+: YAML syntax error/);
  });
});

describe("sizes and addresses", () => {
  test("sizes", () => {
    expect(parseSizeBytes("1GiB")).toBe(1024 ** 3);
    expect(parseSizeBytes("512M")).toBe(512 * 1024 ** 2);
    expect(parseSizeBytes("64k")).toBe(65536);
    expect(parseSizeBytes(4096)).toBe(4096);
    expect(parseSizeBytes("1.5G")).toBe(1.5 * 1024 ** 3);
    expect(parseSizeBytes("lots")).toBeNull();
    expect(parseSizeBytes("-1")).toBeNull();
    expect(parseSizeBytes("3 parsecs")).toBeNull();
  });
  test("host:port", () => {
    expect(parseHostPort("127.0.0.1:10809", 1)).toEqual({ host: "127.0.0.1", port: 10809 });
    expect(parseHostPort("example", 6611)).toEqual({ host: "example", port: 6611 });
    expect(parseHostPort("[::1]:7072", 1)).toEqual({ host: "::1", port: 7072 });
    expect(parseHostPort("h:99999", 1)).toBeNull();
    expect(parseHostPort("a b", 1)).toBeNull();
  });
});
