// What scli --check_volume_consistency prints for each mismatch: an extent with one in-sync copy
// is reported as degraded (a rebuild or resync is due), not as copies that differ; two copies
// that disagree list each copy's checksum or error.

import { expect, test } from "bun:test";
import { mismatchText } from "../src/cmd/scli/cmd_volume.ts";

const copy = (sdsId: string, checksum: string | null, error: string | null = null) => ({ sdsId, checksum, error, status: null });

test("one in-sync copy reads as degraded, with the copy's checksum", () => {
  expect(mismatchText({ extentIndex: 3, copies: [copy("sdsA", "ab12")] })).toBe("extent 3 has only one in-sync copy (degraded; wait for the rebuild or resync) [sdsA=ab12]");
});

test("two copies that disagree list both; a layer is named; an error stands for a missing checksum", () => {
  expect(mismatchText({ extentIndex: 1, copies: [copy("sdsA", "ab12"), copy("sdsB", "cd34")] })).toBe("extent 1 [sdsA=ab12 sdsB=cd34]");
  expect(mismatchText({ extentIndex: 0, layerId: "1a00000000000003", copies: [copy("sdsA", "ab12"), copy("sdsB", null, "STALE_EPOCH")] })).toBe("extent 0 layer 1a00000000000003 [sdsA=ab12 sdsB=STALE_EPOCH]");
});
