// The SDS's MDM-term series (src/proto/term_metrics.ts) read from its TermGuard: the term it
// follows, answers refused for a lower term, and moves to a higher term, as Prometheus renders
// them (the end-to-end view through a real SDS and an MDM restart is in e2e_metrics.test.ts).

import { expect, test } from "bun:test";
import { TermGuard } from "../src/proto/mdm_term.ts";
import { MetricRegistry } from "../src/proto/metrics.ts";
import { renderText } from "../src/proto/metrics_text.ts";
import { registerTermMetrics } from "../src/proto/term_metrics.ts";
import { sample } from "./helpers/operator_views.ts";

test("an SDS's term series: the first term learnt, a takeover, and an old MDM's answers refused", () => {
  const reg = new MetricRegistry();
  const terms = new TermGuard("sds test");
  registerTermMetrics(reg, terms, { role: "sds", labelNames: ["sds_id"], labels: ["5d1a000000000001"] });
  const id = { sds_id: "5d1a000000000001" };
  const now = () => {
    const t = renderText(reg);
    return { term: sample(t, "pf_sds_mdm_term", id), refused: sample(t, "pf_sds_mdm_term_refused_total", id), changes: sample(t, "pf_sds_mdm_term_changes_total", id) };
  };
  expect(now()).toEqual({ term: 0, refused: 0, changes: 0 });
  expect(terms.observe(58, "m1")).toBe(true);
  expect(now()).toEqual({ term: 58, refused: 0, changes: 0 }); // learnt, not a change
  expect(terms.observe(58, "m1")).toBe(true);
  expect(terms.observe(62, "m2")).toBe(true); // a takeover
  expect(now()).toEqual({ term: 62, refused: 0, changes: 1 });
  // the deposed MDM answers twice more: refused, counted, the term stays
  expect(terms.observe(58, "m1")).toBe(false);
  expect(terms.observe(58, "m1")).toBe(false);
  expect(now()).toEqual({ term: 62, refused: 2, changes: 1 });
  const text = renderText(reg);
  expect(text).toContain("# TYPE pf_sds_mdm_term gauge\n");
  expect(text).toContain("# TYPE pf_sds_mdm_term_refused_total counter\n");
  expect(text).toContain("# TYPE pf_sds_mdm_term_changes_total counter\n");
});
