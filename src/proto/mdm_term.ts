// The receiving side of MDM fencing: an SDS or SDC keeps the highest MDM term it has seen
// (persisted in its data dir when it has one) and refuses any MDM answer of a lower term, so an
// MDM that was paused, cut off or restarted from an old process can never move an extent, bump
// an epoch or grant a lease after a newer MDM spoke. The highest term also rides on every
// request (MDM_TERM_HEADER): an old MDM that hears of a newer term steps down.
//
// Invariants: highest only grows (per system: a join answer naming another System id starts
// over, since a new cluster's terms start low again); refused counts every refused answer.

import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { consola } from "consola";
import { z } from "zod";

export const MDM_TERM_HEADER = "x-pf-mdm-term";

const TermFile = z.object({ term: z.number().int().nonnegative(), systemId: z.string().nullable().default(null) });

export class TermGuard {
  private highestTerm = 0;
  private systemId: string | null = null;
  /** answers refused because their term was below the highest seen */
  refused = 0;
  /** answers accepted that raised the highest term */
  raised = 0;
  /** moves from a known term to a higher one (the "MDM term A -> B" lines; not the first term learnt) */
  changes = 0;

  constructor(
    private readonly who: string,
    private readonly file: string | null = null,
  ) {
    if (file !== null && existsSync(file)) {
      const parsed = TermFile.safeParse(JSON.parse(readFileSync(file, "utf8")));
      if (parsed.success) {
        this.highestTerm = parsed.data.term;
        this.systemId = parsed.data.systemId;
      } else {
        consola.warn(`${who}: ignoring unreadable MDM term file ${file}`);
      }
    }
  }

  get highest(): number {
    return this.highestTerm;
  }

  /** A join answer: a different system starts the term record over. */
  joined(systemId: string): void {
    if (this.systemId === systemId) return;
    if (this.systemId !== null) consola.info(`${this.who}: joined system ${systemId} (was ${this.systemId}); MDM terms start over`);
    this.systemId = systemId;
    this.highestTerm = 0;
    this.persist();
  }

  /** true: accept the answer (term recorded); false: refuse it (lower than the highest seen). */
  observe(term: number, from: string): boolean {
    if (term < this.highestTerm) {
      this.refused++;
      consola.warn(`${this.who}: refused an answer of MDM ${from} with term ${term}: term ${this.highestTerm} was seen already (${this.refused} refused)`);
      return false;
    }
    if (term > this.highestTerm) {
      if (this.highestTerm > 0) {
        consola.info(`${this.who}: MDM term ${this.highestTerm} -> ${term} (${from})`);
        this.changes++;
      }
      this.highestTerm = term;
      this.raised++;
      this.persist();
    }
    return true;
  }

  private persist(): void {
    if (this.file === null) return;
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify({ term: this.highestTerm, systemId: this.systemId }) + "\n", { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}
