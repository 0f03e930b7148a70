// Prometheus series of a node's MDM fencing state (mdm_term.ts TermGuard): the MDM term it
// follows, the MDM answers it refused for a lower term (orders of a deposed, paused or cut-off
// MDM), and how often the term rose (a takeover, or a single MDM's restart). An SDS registers
// them with its sds_id; the series are read from the guard at scrape time, never kept twice.
//
// Invariants: names are pf_<role>_mdm_term, pf_<role>_mdm_term_refused_total and
// pf_<role>_mdm_term_changes_total; the counters only grow (the guard's counts only grow).

import type { TermGuard } from "./mdm_term.ts";
import type { MetricRegistry } from "./metrics.ts";

/** What the series read from a TermGuard. */
export type TermView = Pick<TermGuard, "highest" | "refused" | "changes">;

export function registerTermMetrics(reg: MetricRegistry, terms: TermView, o: { role: "sds" | "sdc"; labelNames: string[]; labels: string[] }): void {
  const who = o.role.toUpperCase();
  const term = reg.gauge({ name: `pf_${o.role}_mdm_term`, help: `Highest MDM term this ${who} has seen: it follows that MDM and refuses answers of a lower term.`, labelNames: o.labelNames }).with(...o.labels);
  const refused = reg.counter({ name: `pf_${o.role}_mdm_term_refused_total`, help: `MDM answers this ${who} refused because their term was below the highest seen (orders of a deposed MDM).`, labelNames: o.labelNames }).with(...o.labels);
  const changes = reg.counter({ name: `pf_${o.role}_mdm_term_changes_total`, help: `Times the MDM term this ${who} follows moved to a higher one (an MDM takeover or restart seen; the first term learnt is not counted).`, labelNames: o.labelNames }).with(...o.labels);
  reg.onCollect(() => {
    term.value = terms.highest;
    refused.value = terms.refused;
    changes.value = terms.changes;
  });
}
