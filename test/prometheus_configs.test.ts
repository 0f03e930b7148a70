// The shipped Prometheus files: configs/pf_alerts.yml passes `promtool check rules`,
// configs/prometheus.yml passes `promtool check config --syntax-only` (promtool required: missing,
// the test fails), and every pf_* metric the rules use is a family the MDM's /metrics declares,
// so a rename cannot silently leave a rule that never fires.

import { afterAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { promtoolConfig, promtoolRules } from "./helpers/promtool.ts";
import { ObserveCluster } from "./mdm_observe_fixture.ts";

const configs = join(import.meta.dir, "..", "configs");
let c: ObserveCluster | null = null;
afterAll(() => c?.close());

test("promtool check rules configs/pf_alerts.yml and check config configs/prometheus.yml are clean", () => {
  const rules = promtoolRules(join(configs, "pf_alerts.yml"));
  expect(rules.code).toBe(0);
  expect(rules.output).toContain("SUCCESS");
  const cfg = promtoolConfig(join(configs, "prometheus.yml"));
  expect(cfg.code).toBe(0);
});

test("every pf_* metric in the rules is declared by the MDM's /metrics; every rule has a summary, a description and a severity", async () => {
  c = await ObserveCluster.open();
  c.ctx.observe.certValidToMs = c.m.clock.nowMs + 365 * 86_400_000;
  await c.volume("v1");
  const text = await (await c.m.core.app.request("/metrics")).text();
  const declared = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
  const doc = parse(readFileSync(join(configs, "pf_alerts.yml"), "utf8")) as { groups: { rules: { alert: string; expr: string; labels: Record<string, string>; annotations: Record<string, string> }[] }[] };
  const used = new Set<string>();
  for (const g of doc.groups) {
    for (const r of g.rules) {
      expect({ alert: r.alert, severity: ["critical", "warning"].includes(r.labels.severity ?? "") }).toEqual({ alert: r.alert, severity: true });
      expect(r.annotations.summary?.length ?? 0).toBeGreaterThan(0);
      expect(r.annotations.description?.length ?? 0).toBeGreaterThan(0);
      for (const m of r.expr.matchAll(/\b(pf_[a-z0-9_]+)/g)) used.add(m[1]!);
    }
  }
  expect(used.size).toBeGreaterThan(10);
  expect([...used].filter((n) => !declared.has(n))).toEqual([]);
});
