// The pf edge's one error handler and its strict flag check, in-process: each kind of thrown
// value becomes one line and the exit status of its kind; a broken invariant and --debug show the
// stack, nothing else does; flags citty would silently ignore are refused, valid forms pass.

import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { failureOf, failureText, errnoFailure } from "../src/cmd/cli_failure.ts";
import { checkFlags } from "../src/cmd/cli_flags.ts";
import { PfError, assert, exitStatusOf } from "../src/proto/errors.ts";
import { sdsCommand } from "../src/cmd/sds.ts";
import type { ArgsDef } from "citty";

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw");
}

describe("failures become one line and a status by kind", () => {
  test("a missing file is 'not found' (7) and names the file", () => {
    const f = failureOf(thrown(() => readFileSync("/nonexistent/pf.yaml")));
    expect(exitStatusOf[f.code]).toBe(7);
    expect(failureText("pf up", f, false)).toBe("pf up: open /nonexistent/pf.yaml: no such file or directory\n");
    expect(errnoFailure(thrown(() => readFileSync("/nonexistent/pf.yaml")), "read cluster file x").message).toBe("cannot read cluster file x: no such file or directory");
  });

  test("a port in use is a conflict (4); a directory given as a file is bad input (2)", () => {
    const inUse = Object.assign(new Error("listen EADDRINUSE: address already in use 127.0.0.1:6611"), { code: "EADDRINUSE", syscall: "listen" });
    expect(exitStatusOf[failureOf(inUse).code]).toBe(4);
    const isDir = failureOf(thrown(() => readFileSync("/tmp")));
    expect(exitStatusOf[isDir.code]).toBe(2);
    expect(isDir.message).toContain("is a directory");
  });

  test("a PfError keeps its code; a multi-line message becomes one line", () => {
    const f = failureOf(new PfError("UNAUTHORIZED", "the MDM refused\n   the cluster secret"));
    expect(exitStatusOf[f.code]).toBe(3);
    expect(failureText("pf sds", f, false)).toBe("pf sds: the MDM refused the cluster secret\n");
  });

  test("citty's flag errors are bad input, without colour codes", () => {
    const e = Object.assign(new Error("Missing required argument: \u001b[36m--data-dir\u001b[39m"), { name: "CLIError" });
    const f = failureOf(e);
    expect(f.code).toBe("BAD_REQUEST");
    expect(f.message).toBe("Missing required argument: --data-dir");
  });

  test("a broken invariant prints its assertion message and the stack, loudly", () => {
    const f = failureOf(thrown(() => assert(false, "two copies of one extent on one SDS")));
    expect(f.invariant).toBe(true);
    expect(exitStatusOf[f.code]).toBe(1);
    const text = failureText("pf sds", f, false);
    expect(text.split("\n")[0]).toBe("pf sds: invariant broken: two copies of one extent on one SDS");
    expect(text).toMatch(/\n\s+at /);
  });

  test("an unexpected error is internal (1): one line without --debug, the stack with it", () => {
    const e = thrown(() => (JSON.parse("{") as { x: number }).x);
    const f = failureOf(e);
    expect(exitStatusOf[f.code]).toBe(1);
    const plain = failureText("pf up", f, false);
    expect(plain).toMatch(/^pf up: internal error: SyntaxError: .+ \(run again with --debug for the stack\)\n$/);
    expect(failureText("pf up", f, true)).toMatch(/\n\s+at /);
  });
});

describe("strict flags", () => {
  const args = sdsCommand.args as ArgsDef;
  const refused = (argv: string[]) => (thrown(() => checkFlags(args, argv, "pf sds")) as PfError).message;

  test("every valid form passes", () => {
    expect(() => checkFlags(args, ["--data-dir", "d", "--device", "a.img:1GiB", "--device=b.img:1GiB", "--name=s1"], "pf sds")).not.toThrow();
  });
  test("unknown, valueless, missing and stray flags are refused with the command's help", () => {
    expect(refused(["--data-dir", "d", "--device", "a", "--lisen", "x"])).toBe("unknown flag --lisen (did you mean --listen?); see pf sds --help");
    expect(refused(["--data-dir", "d", "--device"])).toBe("--device needs a value; see pf sds --help");
    expect(refused(["--data-dir", "d", "--device", "a", "--name="])).toBe("--name needs a value, got an empty one; see pf sds --help");
    expect(refused(["--device", "a"])).toStartWith("missing --data-dir");
    expect(refused(["--data-dir", "d", "--device", "a", "extra"])).toBe('unexpected argument "extra"; see pf sds --help');
    expect(refused(["-x"])).toBe("unknown flag -x; see pf sds --help");
  });
});
