// Hosts of an HA cluster as Linux network namespaces on two bridges, as an operator's MDM hosts
// with two networks: an "etcd" network (the etcd members e1..e3 and one link of each MDM host) and
// a "data" network (the other link of each MDM host, the SDS hosts and the SDC host). Both bridges
// live in a "switch" namespace; the test process itself gets one link on each bridge (address
// .254) so it can reach the MDMs' REST, the SDC's NBD export and etcd. The root namespace does not
// forward (net.ipv4.ip_forward stays as it is; the MDM namespaces have no default route), so taking
// an MDM's etcd link down cuts it from etcd and from nothing else. Addresses 10.215.<n>.x (etcd)
// and 10.216.<n>.x (data) exist only inside these namespaces. destroy() removes everything, pass
// or fail. Needs root and iproute2.

import { spawnSync } from "node:child_process";
import type { HaLayout, MdmHost } from "./ha_cluster.ts";

type Net = "etcd" | "data";
const NET_PREFIX: Record<Net, string> = { etcd: "10.215", data: "10.216" };
const NET_CODE: Record<Net, string> = { etcd: "e", data: "d" };

function ip(args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")} failed: ${r.stderr || r.error?.message}`);
}

/**
 * A third octet whose 10.215.<n>.0/24 no link of the root namespace has: the test process's own
 * links (.254) live there, and another network of a test file running at the same time (bun test
 * --parallel, another checkout's suite) must not route the same subnet.
 */
function unusedSubnet(): number {
  const r = spawnSync("ip", ["-4", "-o", "addr", "show"], { encoding: "utf8" });
  const taken = new Set([...(r.stdout ?? "").matchAll(/inet 10\.21[56]\.(\d+)\./g)].map((m) => Number(m[1])));
  for (let attempt = 0; attempt < 100; attempt++) {
    const n = 1 + Math.floor(Math.random() * 250);
    if (!taken.has(n)) return n;
  }
  throw new Error("no free 10.215.n.0/24 for a test network: remove stale pf* namespaces and veths (ip netns list)");
}

interface Host {
  name: string;
  ns: string;
  n: number;
  addr: Partial<Record<Net, string>>;
}

export class HaNetwork {
  private readonly tag = Math.random().toString(36).slice(2, 7);
  private readonly subnet = unusedSubnet();
  private readonly sw = `pf${this.tag}sw`;
  private readonly hosts: Host[] = [];
  private rootLinks: string[] = [];

  /** etcd hosts e1..e3, MDM hosts m1..m3 (both nets), SDS hosts d1..dN and the SDC host c1 (data net). */
  constructor(readonly sdsHosts = 3) {
    if (Bun.which("ip") === null) throw new Error("iproute2 (ip) is required: apt-get install -y iproute2");
    try {
      ip(["netns", "add", this.sw]);
      for (const net of ["etcd", "data"] as const) {
        ip(["-n", this.sw, "link", "add", `sw${NET_CODE[net]}`, "type", "bridge"]);
        ip(["-n", this.sw, "link", "set", `sw${NET_CODE[net]}`, "up"]);
        this.rootLink(net);
      }
      let n = 1;
      for (const e of ["e1", "e2", "e3"]) this.addHost(e, n++, ["etcd"]);
      for (const m of ["m1", "m2", "m3"]) this.addHost(m, n++, ["etcd", "data"]);
      for (let i = 1; i <= sdsHosts; i++) this.addHost(`d${i}`, n++, ["data"]);
      this.addHost("c1", n++, ["data"]);
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  private address(net: Net, n: number): string {
    return `${NET_PREFIX[net]}.${this.subnet}.${n}`;
  }

  /** the test process's own link on a bridge (.254) */
  private rootLink(net: Net): void {
    const inner = `v${this.tag}r${NET_CODE[net]}`;
    const outer = `v${this.tag}R${NET_CODE[net]}`;
    ip(["link", "add", inner, "type", "veth", "peer", "name", outer]);
    this.rootLinks.push(inner);
    ip(["link", "set", outer, "netns", this.sw]);
    ip(["addr", "add", `${this.address(net, 254)}/24`, "dev", inner]);
    ip(["link", "set", inner, "up"]);
    ip(["-n", this.sw, "link", "set", outer, "master", `sw${NET_CODE[net]}`]);
    ip(["-n", this.sw, "link", "set", outer, "up"]);
  }

  private addHost(name: string, n: number, nets: Net[]): void {
    const h: Host = { name, ns: `pf${this.tag}${name}`, n, addr: {} };
    ip(["netns", "add", h.ns]);
    this.hosts.push(h);
    ip(["-n", h.ns, "link", "set", "lo", "up"]);
    for (const net of nets) {
      const inner = `v${this.tag}${n}${NET_CODE[net]}a`;
      const outer = this.outer(h, net);
      ip(["link", "add", inner, "type", "veth", "peer", "name", outer]);
      ip(["link", "set", inner, "netns", h.ns]);
      ip(["link", "set", outer, "netns", this.sw]);
      h.addr[net] = this.address(net, n);
      ip(["-n", h.ns, "addr", "add", `${h.addr[net]}/24`, "dev", inner]);
      ip(["-n", h.ns, "link", "set", inner, "up"]);
      ip(["-n", this.sw, "link", "set", outer, "master", `sw${NET_CODE[net]}`]);
      ip(["-n", this.sw, "link", "set", outer, "up"]);
    }
  }

  private outer(h: Host, net: Net): string {
    return `v${this.tag}${h.n}${NET_CODE[net]}b`;
  }

  private host(name: string): Host {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no test host ${name}`);
    return h;
  }

  addressOf(name: string, net: Net): string {
    const a = this.host(name).addr[net];
    if (a === undefined) throw new Error(`host ${name} has no link on the ${net} network`);
    return a;
  }

  /** argv prefix that runs a command inside a host's namespace */
  exec(name: string): string[] {
    return ["ip", "netns", "exec", this.host(name).ns];
  }

  /** Take a host's link on one network down at the switch (the host keeps its other link). */
  cut(name: string, net: Net): void {
    ip(["-n", this.sw, "link", "set", this.outer(this.host(name), net), "down"]);
  }

  heal(name: string, net: Net): void {
    ip(["-n", this.sw, "link", "set", this.outer(this.host(name), net), "up"]);
  }

  /** The HA cluster layout: MDMs listen on their data address; one SDS per d host; the SDC on c1. */
  layout(): HaLayout {
    const mdmAddr = Object.fromEntries((["m1", "m2", "m3"] as const).map((m) => [m, this.addressOf(m, "data")])) as Record<MdmHost, string>;
    return {
      mdmAddr,
      dataHosts: [
        ...Array.from({ length: this.sdsHosts }, (_, i) => ({ name: `d${i + 1}`, address: this.addressOf(`d${i + 1}`, "data"), sds: [i], sdc: false })),
        { name: "c1", address: this.addressOf("c1", "data"), sds: [], sdc: true },
      ],
      wrap: (host) => this.exec(host),
    };
  }

  get etcdAddresses(): string[] {
    return ["e1", "e2", "e3"].map((e) => this.addressOf(e, "etcd"));
  }

  destroy(): void {
    for (const h of this.hosts) spawnSync("ip", ["netns", "del", h.ns]);
    spawnSync("ip", ["netns", "del", this.sw]);
    for (const l of this.rootLinks) spawnSync("ip", ["link", "del", l]);
    this.hosts.length = 0;
    this.rootLinks = [];
  }
}
