// scli's user and audit commands against a real MDM (runMdm on 127.0.0.1, HTTPS): --add_user with
// a generated one-time password, login as that user (role printed, password change demanded),
// --set_password, --query_users / --query_user, --modify_user, a refused change (exit 3), a
// --reset_password, --delete_user, then --query_audit_log and --verify_audit_log (and a broken
// chain exits non-zero). Each operator session has its own session dir.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runScli } from "../src/cmd/scli/main.ts";
import { runMdm, type MdmHandle } from "../src/mdm/main.ts";

const dir = mkdtempSync(join(tmpdir(), "pf-scli-users-"));
let mdm: MdmHandle;

beforeAll(async () => {
  mdm = await runMdm({ dataDir: join(dir, "mdm"), listenHost: "127.0.0.1", listenPort: 0, adminPassword: "test-admin-pw" });
});
afterAll(async () => {
  await mdm?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function envFor(who: string): Record<string, string | undefined> {
  const home = join(dir, `home-${who}`);
  return { PF_MDM: mdm.url, PF_MDM_CA: mdm.certFile ?? undefined, PF_SCLI_SESSION_DIR: join(home, "pf"), HOME: home };
}

async function scli(who: string, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runScli(argv, { stdout: (s) => (out += s), stderr: (s) => (err += s), env: envFor(who) });
  return { code, out, err };
}

test("an operator walk-through of users, roles and the audit log", async () => {
  expect((await scli("admin", ["--login", "--username", "admin", "--password", "test-admin-pw"])).out).toContain("User role is SuperUser");
  const add = await scli("admin", ["--add_user", "--username", "olga", "--user_role", "Monitor"]);
  expect(add.code).toBe(0);
  const temp = /temporary password is: (\S+)/.exec(add.out)?.[1];
  expect(temp).toBeDefined();

  const login = await scli("olga", ["--login", "--username", "olga", "--password", temp!]);
  expect(login.out).toContain("User role is Monitor");
  expect(login.out).toContain("must be changed");
  const early = await scli("olga", ["--query_all_volumes"]);
  expect(early.code).toBe(3);
  expect(early.err).toContain("must change the password");
  expect((await scli("olga", ["--set_password", "--old_password", temp!, "--new_password", "olga-new-pass-1"])).code).toBe(0);
  expect((await scli("olga", ["--query_all_volumes"])).code).toBe(0);
  expect((await scli("olga", ["--query_user"])).out).toContain("Name: olga Role: Monitor");
  const refused = await scli("olga", ["--add_protection_domain", "--protection_domain_name", "pdx"]);
  expect(refused.code).toBe(3);
  expect(refused.err).toContain("Monitor user may not");

  const users = await scli("admin", ["--query_users"]);
  expect(users.out).toContain("returned 2 users");
  expect(users.out).toContain("Name: olga Role: Monitor");
  expect((await scli("admin", ["--modify_user", "--username", "olga", "--user_role", "FrontendConfig"])).code).toBe(0);
  expect((await scli("admin", ["--query_user", "--username", "olga", "--json"])).out).toContain('"userRole": "FrontendConfig"');
  expect((await scli("admin", ["--modify_user", "--username", "olga", "--user_role", "Wizard"])).code).toBe(2);

  const reset = await scli("admin", ["--reset_password", "--username", "olga"]);
  expect(reset.out).toMatch(/temporary password is: \S+/);
  expect((await scli("olga", ["--query_all_volumes"])).code).toBe(3); // sessions ended by the reset
  expect((await scli("admin", ["--delete_user", "--username", "olga"])).code).toBe(0);
  expect((await scli("admin", ["--query_user", "--username", "olga"])).code).toBe(7);

  const audit = await scli("admin", ["--query_audit_log", "--max_records", "50"]);
  expect(audit.code).toBe(0);
  expect(audit.out).toContain("removeUser");
  expect(audit.out).toContain("olga/Monitor from 127.0.0.1: POST /api/types/ProtectionDomain/instances -> refused 403");
  expect(audit.out).not.toContain(temp!);
  expect(audit.out).not.toContain("olga-new-pass-1");
  expect((await scli("admin", ["--query_audit_log", "--username", "olga"])).out).toContain("login olga");
  expect((await scli("admin", ["--verify_audit_log"])).out).toContain("Audit log chain verified");

  // someone edits a record behind the MDM's back: verify says so and exits non-zero
  const db = new Database(join(dir, "mdm", "mdm.db"));
  db.run("UPDATE audit_log SET result = 'ok' WHERE status = 403");
  db.close();
  const broken = await scli("admin", ["--verify_audit_log"]);
  expect(broken.code).toBe(4);
  expect(broken.err).toContain("chain is broken");
});
