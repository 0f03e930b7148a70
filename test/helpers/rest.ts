// The PowerFlex REST API of a TestCluster's MDM, as a client library sees it: login with Basic
// auth, then token calls, the MDM certificate verified. Answers come back raw (status + JSON) so
// tests can check error bodies too.

import { readFileSync } from "node:fs";
import type { TestCluster } from "./cluster.ts";

export interface RestReply {
  status: number;
  body: unknown;
}

export class Rest {
  private constructor(
    private readonly base: string,
    private readonly ca: string,
    private readonly token: string,
  ) {}

  static async login(c: TestCluster): Promise<Rest> {
    const ca = readFileSync(c.caFile, "utf8");
    const r = await fetch(`${c.mdmUrl}/api/login`, { headers: { authorization: `Basic ${btoa("admin:test-admin-pw")}` }, tls: { ca } });
    if (r.status !== 200) throw new Error(`login failed: ${r.status} ${await r.text()}`);
    return new Rest(c.mdmUrl, ca, (await r.json()) as string);
  }

  async call(method: "GET" | "POST", path: string, body?: unknown): Promise<RestReply> {
    const r = await fetch(`${this.base}/api${path}`, {
      method,
      headers: { authorization: `Basic ${btoa(`admin:${this.token}`)}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      tls: { ca: this.ca },
    });
    const text = await r.text();
    return { status: r.status, body: text.length > 0 ? (JSON.parse(text) as unknown) : null };
  }

  /** POST that must succeed; returns the answer. */
  async ok<T = Record<string, unknown>>(path: string, body: unknown = {}): Promise<T> {
    const r = await this.call("POST", path, body);
    if (r.status !== 200) throw new Error(`POST ${path} -> ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as T;
  }

  async get<T = Record<string, unknown>>(path: string): Promise<T> {
    const r = await this.call("GET", path);
    if (r.status !== 200) throw new Error(`GET ${path} -> ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as T;
  }

  async volumeId(name: string): Promise<string> {
    return this.ok<string>("/types/Volume/instances/action/queryIdByKey", { name });
  }

  async sdcId(): Promise<string> {
    const list = await this.get<{ id: string }[]>("/types/Sdc/instances");
    return list[0]!.id;
  }
}
