// What an operator reads of a running cluster, for the scenario tests: a role's or the MDM's
// /metrics (Prometheus text, samples summed by label), the MDM's PowerFlex REST API (a logged-in
// admin session: objects, Statistics, actions) and the active alerts as `scli --query_alerts
// --json` prints them. Read-only helpers; every failure names the request.

import { readFileSync } from "node:fs";
import { AlertObject } from "../../src/proto/powerflex_api.ts";
import type { Scli } from "./recovery.ts";

/** GET url/metrics (plain HTTP for the roles' control ports; the MDM's certificate for its HTTPS port). */
export async function scrape(baseUrl: string, caPem?: string): Promise<string> {
  const init = caPem === undefined ? {} : { tls: { ca: caPem } };
  const r = await fetch(`${baseUrl}/metrics`, init as RequestInit);
  if (r.status !== 200) throw new Error(`GET ${baseUrl}/metrics: ${r.status} ${await r.text()}`);
  return r.text();
}

/** Sum of the samples of `name` whose labels include every pair of `labels`; throws when there is none. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  let found = false;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    found = true;
  }
  if (!found) throw new Error(`no sample ${name}${JSON.stringify(labels)} in:\n${text.slice(0, 2000)}`);
  return sum;
}

/** Whether any sample of `name` carries all of `labels`. */
export function hasSample(text: string, name: string, labels: Record<string, string>): boolean {
  return text.split("\n").some((l) => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)));
}

/** One PowerFlex Bwc triplet: numOccured operations (or KiB) over numSeconds. */
export interface Bwc {
  numOccured: number;
  numSeconds: number;
  totalWeightInKb: number;
}
export type Statistics = Record<string, unknown> & Partial<Record<"userDataReadBwc" | "userDataWriteBwc" | "primaryWriteBwc" | "secondaryWriteBwc", Bwc>>;

/** An admin session on the MDM's REST API (PowerFlex gateway shape). */
export class MdmRest {
  private token = "";
  readonly caPem: string;

  constructor(
    readonly url: string,
    caFile: string,
  ) {
    this.caPem = readFileSync(caFile, "utf8");
  }

  async login(user: string, password: string): Promise<void> {
    const r = await fetch(`${this.url}/api/login`, { headers: { authorization: basic(user, password) }, tls: { ca: this.caPem } } as RequestInit);
    if (r.status !== 200) throw new Error(`GET /api/login: ${r.status} ${await r.text()}`);
    this.token = (await r.json()) as string;
  }

  async get<T>(path: string): Promise<T> {
    const r = await fetch(`${this.url}${path}`, { headers: { authorization: basic("admin", this.token) }, tls: { ca: this.caPem } } as RequestInit);
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${await r.text()}`);
    return (await r.json()) as T;
  }

  async post(path: string, body: unknown): Promise<{ status: number; body: unknown }> {
    const r = await fetch(`${this.url}${path}`, {
      method: "POST",
      headers: { authorization: basic("admin", this.token), "content-type": "application/json" },
      body: JSON.stringify(body),
      tls: { ca: this.caPem },
    } as RequestInit);
    const text = await r.text();
    return { status: r.status, body: text === "" ? null : (JSON.parse(text) as unknown) };
  }

  /** GET /api/instances/<Type>::<id>/relationships/Statistics */
  statistics(type: string, id: string): Promise<Statistics> {
    return this.get<Statistics>(`/api/instances/${type}::${id}/relationships/Statistics`);
  }

  /** id of the object of `type` named `name` */
  async idOf(type: string, name: string): Promise<string> {
    const all = await this.get<{ id: string; name: string | null }[]>(`/api/types/${type}/instances`);
    const o = all.find((x) => x.name === name);
    if (!o) throw new Error(`no ${type} named ${name}`);
    return o.id;
  }

  /** the MDM's cluster-wide /metrics (HTTPS, no token) */
  metrics(): Promise<string> {
    return scrape(this.url, this.caPem);
  }
}

function basic(user: string, secret: string): string {
  return `Basic ${Buffer.from(`${user}:${secret}`).toString("base64")}`;
}

/** `scli --query_alerts --json` (with --all: the cleared ones too), parsed. */
export async function queryAlerts(scli: Scli, opts: { all?: boolean } = {}): Promise<AlertObject[]> {
  const r = await scli(["--query_alerts", ...(opts.all ? ["--all"] : []), "--json"]);
  if (r.code !== 0) throw new Error(`scli --query_alerts failed (${r.code}): ${r.stderr}`);
  return (JSON.parse(r.stdout) as unknown[]).map((a) => AlertObject.parse(a));
}

/** Sum of pf_alerts_active on the MDM's /metrics (every severity and type). */
export function activeAlertCount(mdmMetrics: string, alertType?: string): number {
  return sample(mdmMetrics, "pf_alerts_active", alertType === undefined ? {} : { alert_type: alertType });
}

/** Run scli and require exit 0; its stdout. */
export async function scliOk(scli: Scli, args: string[]): Promise<string> {
  const r = await scli(args);
  if (r.code !== 0) throw new Error(`scli ${args.join(" ")} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}
