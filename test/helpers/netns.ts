// Test hosts as Linux network namespaces: one namespace per host, each with a veth pair into a
// bridge that lives in a "switch" namespace of its own, addresses 10.213.<net>.<host>/24 that
// exist only inside these namespaces. The test creates them, partitions a host by taking its
// link down, heals it, and removes everything at the end (pass or fail). Needs root and
// iproute2 (`ip`).

import { spawnSync } from "node:child_process";

function ip(args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")} failed: ${r.stderr || r.error?.message}`);
}

export interface NetHost {
  name: string;
  ns: string;
  address: string;
}

export class TestNetwork {
  readonly hosts: NetHost[] = [];
  private readonly switchNs: string;
  private readonly tag: string;
  private readonly net: number;

  constructor(hostNames: string[]) {
    if (Bun.which("ip") === null) throw new Error("iproute2 (ip) is required: apt-get install -y iproute2");
    this.tag = Math.random().toString(36).slice(2, 7);
    this.net = 1 + Math.floor(Math.random() * 250);
    this.switchNs = `pf${this.tag}sw`;
    try {
      ip(["netns", "add", this.switchNs]);
      ip(["-n", this.switchNs, "link", "add", "br0", "type", "bridge"]);
      ip(["-n", this.switchNs, "link", "set", "br0", "up"]);
      hostNames.forEach((name, i) => this.addHost(name, i + 1));
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  private addHost(name: string, n: number): void {
    const ns = `pf${this.tag}h${n}`;
    const address = `10.213.${this.net}.${n}`;
    ip(["netns", "add", ns]);
    this.hosts.push({ name, ns, address });
    const inner = `v${this.tag}${n}a`;
    const outer = `v${this.tag}${n}b`;
    ip(["link", "add", inner, "type", "veth", "peer", "name", outer]);
    ip(["link", "set", inner, "netns", ns]);
    ip(["link", "set", outer, "netns", this.switchNs]);
    ip(["-n", ns, "link", "set", "lo", "up"]);
    ip(["-n", ns, "addr", "add", `${address}/24`, "dev", inner]);
    ip(["-n", ns, "link", "set", inner, "up"]);
    ip(["-n", this.switchNs, "link", "set", outer, "master", "br0"]);
    ip(["-n", this.switchNs, "link", "set", outer, "up"]);
  }

  host(name: string): NetHost {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no test host ${name}`);
    return h;
  }

  /** argv prefix that runs a command inside a host's namespace */
  exec(name: string): string[] {
    return ["ip", "netns", "exec", this.host(name).ns];
  }

  /** Cut a host off from every other host (its link on the switch goes down). */
  partition(name: string): void {
    const n = this.hosts.indexOf(this.host(name)) + 1;
    ip(["-n", this.switchNs, "link", "set", `v${this.tag}${n}b`, "down"]);
  }

  heal(name: string): void {
    const n = this.hosts.indexOf(this.host(name)) + 1;
    ip(["-n", this.switchNs, "link", "set", `v${this.tag}${n}b`, "up"]);
  }

  destroy(): void {
    for (const h of this.hosts) spawnSync("ip", ["netns", "del", h.ns]);
    spawnSync("ip", ["netns", "del", this.switchNs]);
    this.hosts.length = 0;
  }
}
