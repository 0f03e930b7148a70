// The fuzz corpus (test/fuzz_corpus/<target>/*.json): inputs that once broke something, each
// with what it broke, replayed by the fuzz tests. Socket and REST cases are symbolic (volume
// names, {play}…), so they replay on any cluster.

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const CORPUS_DIR = join(import.meta.dir, "../fuzz_corpus");

export interface CorpusEntry<T> {
  file: string;
  finding: string;
  input: T;
}

/** Entries of one target; a file holds {finding, ...input} (input fields at the top level). */
export function corpusOf<T>(target: string): CorpusEntry<T>[] {
  const dir = join(CORPUS_DIR, target);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => {
      const j = JSON.parse(readFileSync(join(dir, f), "utf8")) as { finding?: unknown; target?: unknown } & Record<string, unknown>;
      if (typeof j.finding !== "string") throw new Error(`${target}/${f}: a corpus entry says what it broke ("finding")`);
      const { finding, target: _t, ...input } = j;
      return { file: `${target}/${f}`, finding, input: input as T };
    });
}
