// Users, roles, sessions and the audit log, in-process (app.request, fake clock): every route has
// an access class; a Monitor changes nothing; a FrontendConfig user maps but adds no SDS; a user
// is locked out after 10 failed logins (the right password is refused too) and unlocked by time,
// also after an MDM restart (the lock is in the database; a success writes nothing unless a lock existed);
// tokens die idle, at their absolute age and at logout; the audit chain finds an edited, a removed
// and a cut-off record; no password or token reaches the audit log or the MDM's log; 200
// PyPowerFlex-style logins are fast (p50/p99 printed).

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import consola, { type ConsolaReporter } from "consola";
import { Limits } from "../src/proto/limits.ts";
import { INSTANCE_ACTIONS } from "../src/mdm/rest/rest_routes.ts";
import { CREATE_CLASSES, INSTANCE_ACTION_CLASSES, ROUTE_CLASSES, USER_ACTION_CLASSES } from "../src/mdm/rest/route_access.ts";
import { ROLE_GRANTS, Roles } from "../src/mdm/core/roles.ts";
import { pruneAuditForTest } from "../src/mdm/core/audit.ts";
import { PowerFlexTypes } from "../src/proto/powerflex_api.ts";
import { ADMIN_PASSWORD, basic, MdmFixture, type Reply } from "./mdm_fixture.ts";

type Obj = Record<string, unknown>;
let m: MdmFixture;

beforeEach(async () => {
  m = await MdmFixture.open();
  await m.login();
});
afterEach(() => m.close());

async function loginAs(name: string, password: string): Promise<Reply> {
  return m.raw("GET", "/api/login", { headers: { authorization: basic(name, password) } });
}

/** Restart the MDM on the same data dir and clock (its in-memory state gone), logged in as admin again. */
async function restart(): Promise<void> {
  m.close({ keepDir: true });
  m = await MdmFixture.open({ dir: m.dir, clock: m.clock });
  await m.login();
}

function lockoutRows(): { user_name: string; locked_until_ms: number }[] {
  return m.core.ctx.store.sqlite.query<{ user_name: string; locked_until_ms: number }, []>("SELECT user_name, locked_until_ms FROM login_lockout ORDER BY user_name").all();
}

/** Every write the login guard makes to its lock-out store from now on ("lock <user>", "clear <user>"). */
function countLockoutWrites(): string[] {
  const writes: string[] = [];
  const guard = m.core.ctx.tokens.guard;
  const inner = guard["lockouts"];
  Object.assign(guard, {
    lockouts: {
      load: () => inner.load(),
      lock: (u: string, at: number, until: number) => (writes.push(`lock ${u}`), inner.lock(u, at, until)),
      clear: (u: string) => (writes.push(`clear ${u}`), inner.clear(u)),
    },
  });
  return writes;
}



async function setupPool(): Promise<{ pdId: string; poolId: string; sdcId: string; volumeId: string }> {
  const pdId = ((await m.api("POST", "/types/ProtectionDomain/instances", { name: "pd1" })).json as Obj).id as string;
  const sp = await m.api("POST", "/types/StoragePool/instances", { protectionDomainId: pdId, name: "sp1", mediaType: "HDD" });
  const poolId = (sp.json as Obj).id as string;
  for (let i = 1; i <= 3; i++) await m.joinSds(`sds${i}`, { devicesGiB: [100] });
  const sdcId = await m.joinSdc("guid-host-a", "hostA");
  const v = await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "8", name: "v1", volumeType: "ThinProvisioned" });
  expect(v.status).toBe(200);
  return { pdId, poolId, sdcId, volumeId: (v.json as Obj).id as string };
}

describe("deny by default: every route has an access class", () => {
  test("every registered /api route, instance action and create type has a class; every role's grants are known classes", () => {
    const keys = m.core.app.routes.filter((r) => r.path.startsWith("/api/") && r.method !== "ALL").map((r) => `${r.method} ${r.path.slice(4)}`);
    expect(keys.length).toBeGreaterThan(30);
    expect(keys.filter((k) => ROUTE_CLASSES[k] === undefined)).toEqual([]);
    expect(Object.keys(INSTANCE_ACTIONS).filter((k) => INSTANCE_ACTION_CLASSES[k] === undefined)).toEqual([]);
    const creatable = PowerFlexTypes.filter((t) => !["System", "Sdc", "VTree"].includes(t));
    expect(creatable.filter((t) => CREATE_CLASSES[t] === undefined)).toEqual([]);
    expect(Object.keys(USER_ACTION_CLASSES).sort()).toEqual(["removeUser", "resetPassword", "setPassword", "setUserRole"]);
    for (const r of Roles) expect(ROLE_GRANTS[r].length).toBeGreaterThan(0);
  });
});

describe("roles", () => {
  test("a Monitor user reads everything but changes nothing: every mutating route and every instance action is 403", async () => {
    const { poolId, sdcId, volumeId } = await setupPool();
    const mon = await m.userToken("watcher", "Monitor");
    await m.as(mon, async () => {
      expect((await m.api("GET", "/types/Volume/instances")).status).toBe(200);
      expect((await m.api("GET", `/instances/Volume::${volumeId}`)).status).toBe(200);
      expect((await m.api("POST", "/types/Volume/instances/action/queryIdByKey", { name: "v1" })).status).toBe(200);
      const refused: [string, unknown][] = [
        ["/types/ProtectionDomain/instances", { name: "pd2" }],
        ["/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "8", name: "v2" }],
        ["/types/User/instances", { name: "x1", userRole: "Monitor", password: "0123456789" }],
        ["/instances/System/action/snapshotVolumes", { snapshotDefs: [{ volumeId, snapshotName: "s1" }] }],
        ["/instances/System/action/changeMdmOwnership", {}],
        [`/instances/Volume::${volumeId}/action/addMappedSdc`, { sdcId, accessMode: "ReadWrite" }],
      ];
      for (const [path, body] of refused) {
        const r = await m.api("POST", path, body);
        expect({ path, status: r.status, pfCode: (r.json as Obj).pfCode }).toEqual({ path, status: 403, pfCode: "FORBIDDEN" });
      }
      for (const key of Object.keys(INSTANCE_ACTIONS)) {
        const [type, action] = key.split("/") as [string, string];
        const r = await m.api("POST", `/instances/${type}::0000000000000000/action/${action}`, {});
        expect({ key, status: r.status }).toEqual({ key, status: 403 });
      }
      expect((await m.api("GET", "/pf/audit")).status).toBe(403);
      expect((await m.api("GET", "/types/User/instances")).status).toBe(403);
    });
    // nothing changed: still one volume, unmapped, one PD
    expect(((await m.api("GET", "/types/Volume/instances")).json as unknown[]).length).toBe(1);
    expect(((await m.api("GET", "/types/ProtectionDomain/instances")).json as unknown[]).length).toBe(1);
    expect((((await m.api("GET", `/instances/Volume::${volumeId}`)).json as Obj).mappedSdcInfo as unknown[] | null) ?? []).toEqual([]);
  });

  test("a FrontendConfig user maps a volume to an SDC but cannot add an SDS or a protection domain", async () => {
    const { pdId, sdcId, volumeId } = await setupPool();
    const fe = await m.userToken("frontend", "FrontendConfig");
    await m.as(fe, async () => {
      expect((await m.api("POST", `/instances/Volume::${volumeId}/action/addMappedSdc`, { sdcId, accessMode: "ReadWrite" })).status).toBe(200);
      const sds = await m.api("POST", "/types/Sds/instances", { protectionDomainId: pdId, name: "sds9", sdsIpList: [{ SdsIp: { ip: "127.0.0.9", role: "all" } }] });
      expect(sds.status).toBe(403);
      expect((sds.json as Obj).message).toContain("FrontendConfig");
      expect((await m.api("POST", "/types/ProtectionDomain/instances", { name: "pd2" })).status).toBe(403);
    });
    const v = (await m.api("GET", `/instances/Volume::${volumeId}`)).json as Obj;
    expect((v.mappedSdcInfo as Obj[]).map((x) => x.sdcId)).toEqual([sdcId]);
  });

  test("User type: create, query, current user, set role, reset and set password, remove; managers manage only their roles", async () => {
    const created = await m.api("POST", "/types/User/instances", { name: "ops", userRole: "Administrator" });
    expect(created.status).toBe(200);
    const { id, password } = created.json as { id: string; password: string };
    expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(password.length).toBeGreaterThanOrEqual(12);
    const u = (await m.api("GET", `/instances/User::${id}`)).json as Obj;
    expect(u).toMatchObject({ id, name: "ops", userRole: "Administrator", passwordChangeRequired: true, systemId: m.core.ctx.systemId });
    const sysUsers = (await m.api("GET", `/instances/System::${m.core.ctx.systemId}/relationships/User`)).json as Obj[];
    expect(sysUsers.map((x) => x.name).sort()).toEqual(["admin", "ops"]);

    // a generated password must be changed before anything but "self" routes
    const opsToken = (await loginAs("ops", password)).json as string;
    await m.as(opsToken, async () => {
      expect((await m.api("GET", "/types/Volume/instances")).status).toBe(403);
      expect(((await m.api("POST", "/types/User/instances/action/queryCurrentUser", {})).json as Obj).name).toBe("ops");
      expect((await m.api("POST", `/instances/User::${id}/action/setPassword`, { oldPassword: "wrong-one-123", newPassword: "ops-new-pass-1" })).status).toBe(401);
      expect((await m.api("POST", `/instances/User::${id}/action/setPassword`, { oldPassword: password, newPassword: "ops-new-pass-1" })).status).toBe(200);
      expect((await m.api("GET", "/types/Volume/instances")).status).toBe(200);
      // an Administrator manages Monitor/Configure users, not Administrators or Security
      const mon = await m.api("POST", "/types/User/instances", { name: "mon1", userRole: "Monitor", password: "mon1-password" });
      expect(mon.status).toBe(200);
      expect((await m.api("POST", "/types/User/instances", { name: "sec1", userRole: "Security", password: "sec1-password" })).status).toBe(403);
      expect((await m.api("POST", "/types/User/instances", { name: "su2", userRole: "SuperUser", password: "su2-password" })).status).toBe(400);
      const monId = (mon.json as Obj).id as string;
      expect((await m.api("POST", `/instances/User::${monId}/action/setUserRole`, { userRole: "Configure" })).status).toBe(200);
      expect((await m.api("POST", `/instances/User::${monId}/action/setUserRole`, { userRole: "Administrator" })).status).toBe(403);
    });
    // a role change reaches live tokens at once
    const monTok = (await loginAs("mon1", "mon1-password")).json as string;
    const pd = await m.as(monTok, () => m.api("POST", "/types/ProtectionDomain/instances", { name: "pdc" }));
    expect(pd.status).toBe(200); // Configure now
    const monId = ((await m.api("GET", "/types/User/instances")).json as Obj[]).find((x) => x.name === "mon1")!.id as string;
    expect((await m.api("POST", `/instances/User::${monId}/action/setUserRole`, { userRole: "Monitor" })).status).toBe(200);
    expect((await m.as(monTok, () => m.api("POST", "/types/ProtectionDomain/instances", { name: "pdd" }))).status).toBe(403);
    // reset: old sessions end, the new one-time password works and must be changed
    const reset = await m.api("POST", `/instances/User::${monId}/action/resetPassword`, {});
    const temp = (reset.json as Obj).password as string;
    expect((await m.as(monTok, () => m.api("GET", "/types/System/instances"))).status).toBe(401);
    expect((await loginAs("mon1", "mon1-password")).status).toBe(401);
    expect((await loginAs("mon1", temp)).status).toBe(200);
    // remove: tokens die, login fails; admin cannot be removed
    const t2 = (await loginAs("mon1", temp)).json as string;
    expect((await m.api("POST", `/instances/User::${monId}/action/removeUser`, {})).status).toBe(200);
    expect((await m.as(t2, () => m.api("GET", "/types/System/instances"))).status).toBe(401);
    expect((await m.api("GET", `/instances/User::${monId}`)).status).toBe(500);
    const adminId = ((await m.api("GET", "/types/User/instances")).json as Obj[]).find((x) => x.name === "admin")!.id as string;
    expect(((await m.api("POST", `/instances/User::${adminId}/action/removeUser`, {})).json as Obj).pfCode).toBe("INVALID_STATE");
    expect((await m.api("POST", "/types/User/instances", { name: "ops", userRole: "Monitor", password: "another-pass" })).status).toBe(500);
  });
});

describe("logins and sessions", () => {
  test("10 failed logins in a row lock the user: the PowerFlex 401, the right password refused too, until the lock-out ends", async () => {
    await m.userToken("carol", "Monitor", "carol-password-1");
    for (let i = 0; i < Limits.loginLockoutFailures; i++) expect((await loginAs("carol", `wrong-${i}-xxxx`)).status).toBe(401);
    const locked = await loginAs("carol", "carol-password-1");
    expect(locked.status).toBe(401);
    expect(locked.json).toMatchObject({ httpStatusCode: 401, errorCode: 0, pfCode: "UNAUTHORIZED" });
    expect((locked.json as Obj).message).toContain("locked");
    // another user is not affected
    expect((await loginAs("admin", ADMIN_PASSWORD)).status).toBe(200);
    m.clock.advance(Limits.loginLockoutMs + 1);
    expect((await loginAs("carol", "carol-password-1")).status).toBe(200);
    // failures not in a row do not lock
    for (let i = 0; i < Limits.loginLockoutFailures - 1; i++) await loginAs("carol", "wrong-again-1");
    expect((await loginAs("carol", "carol-password-1")).status).toBe(200);
    for (let i = 0; i < Limits.loginLockoutFailures - 1; i++) await loginAs("carol", "wrong-again-2");
    expect((await loginAs("carol", "carol-password-1")).status).toBe(200);
  });

  test("a lock-out survives an MDM restart: the restarted MDM refuses the locked user with the PowerFlex 401 until the lock ends", async () => {
    await m.userToken("dave", "Monitor", "dave-password-1");
    for (let i = 0; i < Limits.loginLockoutFailures; i++) expect((await loginAs("dave", `wrong-${i}-xxxx`)).status).toBe(401);
    expect(lockoutRows()).toEqual([{ user_name: "dave", locked_until_ms: m.clock.nowMs + Limits.loginLockoutMs }]);
    await restart();
    m.clock.advance(Limits.loginLockoutMs - 60_000);
    const locked = await loginAs("dave", "dave-password-1");
    expect(locked.json).toMatchObject({ httpStatusCode: 401, errorCode: 0, pfCode: "UNAUTHORIZED" });
    expect((locked.json as Obj).message).toMatch(/User dave is locked: 10 failed logins in a row; retry in 60 s/);
    m.clock.advance(60_001);
    expect((await loginAs("dave", "dave-password-1")).status).toBe(200);
    expect(lockoutRows()).toEqual([]); // the success after the lock cleared its row
    // resetPassword lifts a lock, for the restarted MDM too
    for (let i = 0; i < Limits.loginLockoutFailures; i++) await loginAs("dave", `wrong-b${i}-xxxx`);
    expect(lockoutRows().map((r) => r.user_name)).toEqual(["dave"]);
    const daveId = ((await m.api("GET", "/types/User/instances")).json as Obj[]).find((x) => x.name === "dave")!.id as string;
    const temp = ((await m.api("POST", `/instances/User::${daveId}/action/resetPassword`, {})).json as Obj).password as string;
    expect(lockoutRows()).toEqual([]);
    await restart();
    expect((await loginAs("dave", temp)).status).toBe(200);
  });

  test("a successful login writes no lock-out row unless its user had one; a lock is written once, when it starts", async () => {
    await m.userToken("erin", "Monitor", "erin-password-1");
    const writes = countLockoutWrites();
    for (let i = 0; i < 50; i++) expect((await loginAs("erin", "erin-password-1")).status).toBe(200);
    for (let i = 0; i < Limits.loginLockoutFailures - 1; i++) await loginAs("erin", `wrong-${i}-xxxx`);
    expect((await loginAs("erin", "erin-password-1")).status).toBe(200);
    expect(writes).toEqual([]);
    for (let i = 0; i < Limits.loginLockoutFailures; i++) await loginAs("erin", `wrong-c${i}-xxxx`);
    expect((await loginAs("erin", "erin-password-1")).status).toBe(401); // locked: refused before any hash, no write
    expect(writes).toEqual(["lock erin"]);
    m.clock.advance(Limits.loginLockoutMs + 1);
    for (let i = 0; i < 5; i++) expect((await loginAs("erin", "erin-password-1")).status).toBe(200);
    expect(writes).toEqual(["lock erin", "clear erin"]);
  });

  test("failed logins are rate limited by source; an empty user name is refused (it used to log in as admin)", async () => {
    expect((await loginAs("", ADMIN_PASSWORD)).status).toBe(401);
    let limited: Reply | null = null;
    for (let i = 0; i < Limits.loginFailBurst + 2 && limited === null; i++) {
      const r = await loginAs(`nobody${i}`, "whatever-1234");
      if ((r.json as Obj).message !== "Unauthorized") limited = r;
    }
    expect(limited).not.toBeNull();
    expect((limited!.json as Obj).message).toContain("too many failed logins");
    // a password proven a moment ago still logs in at once (PyPowerFlex logs in before every call)
    expect((await loginAs("admin", ADMIN_PASSWORD)).status).toBe(200);
    m.clock.advance(Limits.loginFailRefillMs * 2);
    expect(((await loginAs("nobody-x", "whatever-1234")).json as Obj).message).toBe("Unauthorized");
  });

  test("a token dies when idle, at its absolute age, and at logout", async () => {
    const t = m.token;
    m.clock.advance(Limits.tokenIdleTimeoutMs - 1000);
    expect((await m.api("GET", "/types/System/instances")).status).toBe(200);
    m.clock.advance(Limits.tokenIdleTimeoutMs);
    expect((await m.api("GET", "/types/System/instances")).status).toBe(401);

    await m.login();
    const start = m.clock.nowMs;
    while (m.clock.nowMs - start < Limits.tokenAbsoluteTimeoutMs - Limits.tokenIdleTimeoutMs) {
      m.clock.advance(Limits.tokenIdleTimeoutMs / 2);
      expect((await m.api("GET", "/types/System/instances")).status).toBe(200);
    }
    m.clock.advance(Limits.tokenIdleTimeoutMs);
    expect((await m.api("GET", "/types/System/instances")).status).toBe(401);

    await m.login();
    expect((await m.api("GET", "/logout")).status).toBe(200);
    expect((await m.api("GET", "/types/System/instances")).status).toBe(401);
    expect(t).not.toBe(m.token);
  });

  test("200 PyPowerFlex-style logins (login, version, login, call, logout) stay fast", async () => {
    const ms: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      const r = await loginAs("admin", ADMIN_PASSWORD);
      ms.push(performance.now() - t0);
      expect(r.status).toBe(200);
      m.token = r.json as string;
      expect((await m.api("GET", "/version")).status).toBe(200);
      expect((await m.api("GET", "/types/System/instances")).status).toBe(200);
    }
    ms.sort((a, b) => a - b);
    const p50 = ms[99]!;
    const p99 = ms[197]!;
    process.stderr.write(`in-process login: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms over 200 logins (first one hashes)\n`);
    expect(p50).toBeLessThan(20);
  });
});

describe("audit log", () => {
  function sqlite() {
    return m.core.ctx.store.sqlite;
  }
  async function verify(): Promise<Obj> {
    const r = await m.api("POST", "/pf/audit/verify", {});
    expect(r.status).toBe(200);
    return r.json as Obj;
  }

  test("mutating calls, logins and refusals are recorded with who, from where, what and result; queries are not", async () => {
    const before = ((await m.api("GET", "/pf/audit?limit=1000")).json as Obj[]).length;
    await m.api("POST", "/types/ProtectionDomain/instances", { name: "pdA" });
    await m.api("GET", "/types/ProtectionDomain/instances");
    await loginAs("admin", "not-the-password");
    const mon = await m.userToken("mona", "Monitor");
    await m.as(mon, () => m.api("POST", "/types/ProtectionDomain/instances", { name: "pdB" }));
    const recs = ((await m.api("GET", "/pf/audit?limit=1000&order=oldest")).json as Obj[]).slice(before);
    const summary = recs.map((r) => `${r.kind} ${r.actor} ${r.action} ${r.result}`);
    expect(summary).toEqual(["rest admin create ok", "login admin login refused", "rest admin create ok", "login mona login ok", "refused mona create refused"]);
    const pd = recs[0]!;
    expect(pd).toMatchObject({ objectType: "ProtectionDomain", method: "POST", src: "local", status: 200 });
    expect(pd.objectId).toMatch(/^[0-9a-f]{16}$/);
    expect(JSON.parse(pd.params as string)).toEqual({ name: "pdA" });
    expect(recs[4]!.detail).toContain("Monitor");
    expect((await verify()).ok).toBe(true);
  });

  test("the hash chain detects an edited record, a removed record and a removed tail", async () => {
    for (let i = 0; i < 5; i++) await m.api("POST", "/types/ProtectionDomain/instances", { name: `pd${i}` });
    const ok = await verify();
    expect(ok).toMatchObject({ ok: true, problems: [] });
    const last = ok.lastSeq as number;
    const mid = last - 2;

    const orig = sqlite().query<{ actor: string }, [number]>("SELECT actor FROM audit_log WHERE seq = ?").get(mid)!.actor;
    sqlite().run("UPDATE audit_log SET actor = 'mallory' WHERE seq = ?", [mid]);
    const edited = await verify();
    expect(edited.ok).toBe(false);
    expect((edited.problems as Obj[])[0]).toMatchObject({ seq: mid });
    expect(JSON.stringify(edited.problems)).toContain("edited");
    sqlite().run("UPDATE audit_log SET actor = ? WHERE seq = ?", [orig, mid]);
    expect((await verify()).ok).toBe(true);

    const row = sqlite().query<Record<string, string | number>, [number]>("SELECT * FROM audit_log WHERE seq = ?").get(mid)!;
    sqlite().run("DELETE FROM audit_log WHERE seq = ?", [mid]);
    const removed = await verify();
    expect(removed.ok).toBe(false);
    expect(JSON.stringify(removed.problems)).toContain("missing");
    const cols = Object.keys(row);
    sqlite().run(`INSERT INTO audit_log (${cols.join(",")}) VALUES (${cols.map(() => "?").join(",")})`, cols.map((c) => row[c]!));
    expect((await verify()).ok).toBe(true);

    // the verify calls themselves are not records; cut the last record off
    const head = sqlite().query<{ last_seq: number }, []>("SELECT last_seq FROM audit_head").get()!.last_seq;
    sqlite().run("DELETE FROM audit_log WHERE seq = ?", [head]);
    const cut = await verify();
    expect(cut.ok).toBe(false);
    expect(JSON.stringify(cut.problems)).toContain("removed");
  });

  test("pruning beyond the cap keeps a verifiable chain from the new first record", async () => {
    for (let i = 0; i < 6; i++) await m.api("POST", "/types/ProtectionDomain/instances", { name: `pq${i}` });
    pruneAuditForTest(m.core.ctx, 3);
    const v = await verify();
    expect(v).toMatchObject({ ok: true, records: 3 });
    expect(v.pruned as number).toBeGreaterThan(0);
  });

  test("no password or token given to any call appears in the audit log or the MDM's log", async () => {
    const lines: string[] = [];
    const reporter: ConsolaReporter = { log: (o) => lines.push(JSON.stringify(o.args)) };
    const level = consola.level;
    consola.level = 5;
    consola.addReporter(reporter);
    try {
      const secrets = ["S3cret-User-Pass-1", "S3cret-New-Pass-22", "S3cret-Reset-Pass-333", "S3cret-Wrong-4444", ADMIN_PASSWORD];
      const created = await m.api("POST", "/types/User/instances", { name: "dave", userRole: "Configure", password: secrets[0] });
      const id = (created.json as Obj).id as string;
      const dave = (await loginAs("dave", secrets[0]!)).json as string;
      await m.as(dave, () => m.api("POST", `/instances/User::${id}/action/setPassword`, { oldPassword: secrets[0], newPassword: secrets[1] }));
      await m.api("POST", `/instances/User::${id}/action/resetPassword`, { password: secrets[2] });
      const gen = (await m.api("POST", `/instances/User::${id}/action/resetPassword`, {})).json as Obj;
      secrets.push(gen.password as string);
      await loginAs("dave", secrets[3]!);
      await m.raw("POST", "/api/login", { body: JSON.stringify({ username: "dave", password: secrets[3] }), headers: { "content-type": "application/json" } });
      await m.api("POST", "/types/User/instances", { name: "bad name!", userRole: "Monitor", password: secrets[3] });
      await m.api("POST", "/types/User/instances", { name: "erin", userRole: "NoSuchRole", password: secrets[3] });
      await m.api("GET", "/logout");
      await m.login();
      const tokens = [dave, m.token];
      const audit = JSON.stringify(sqlite().query("SELECT * FROM audit_log").all());
      expect(audit).toContain("dave"); // the calls are there...
      for (const s of [...secrets, ...tokens]) {
        expect({ s, inAudit: audit.includes(s), inLog: lines.some((l) => l.includes(s)) }).toEqual({ s, inAudit: false, inLog: false });
      }
    } finally {
      consola.removeReporter(reporter);
      consola.level = level;
    }
  });
});

describe("data-plane refusals reach the audit log", () => {
  test("an SDS's refusal log hands counts since the last report and a bounded sample; the MDM records them per heartbeat", async () => {
    const { RefusalLog } = await import("../src/sds/refusal_log.ts");
    const log = new RefusalLog("sds t", 5000, () => 0);
    for (let i = 0; i < 50; i++) log.refuse("no_grant", () => `read of volume v from sdc ${i}`);
    log.refuse("hello_fail", () => "bad proof");
    const r1 = log.takeReport();
    expect(r1.counts).toEqual({ no_grant: 50, hello_fail: 1 });
    expect(r1.samples.length).toBe(2); // the rest were muted lines
    expect(log.takeReport()).toEqual({ counts: {}, samples: [] });

    const { sdsId } = await m.joinSds("sds1");
    const hb = await m.cluster("POST", `/sds/${sdsId}/heartbeat`, { devices: [], appliedMapVersion: 0, refusals: r1 });
    expect(hb.status).toBe(200);
    await m.cluster("POST", `/sds/${sdsId}/heartbeat`, { devices: [], appliedMapVersion: 0 });
    const recs = (await m.api("GET", "/pf/audit?kind=dataplane")).json as Obj[];
    expect(recs.length).toBe(1);
    expect(recs[0]).toMatchObject({ actor: "sds sds1", objectId: sdsId, action: "refusals", result: "refused" });
    expect(JSON.parse(recs[0]!.params as string)).toEqual({ no_grant: 50, hello_fail: 1 });
    expect(recs[0]!.detail).toContain("51 refused");
  });
});
