// The web dashboard in a real browser (Debian's chromium through playwright-core) against a real
// one-host cluster started from the compiled binary (3 SDSs, 1 SDC): nothing without login, log
// in, three healthy SDSs, volume actions through their dialogs, fio moving the IOPS chart, kill
// -9 of an SDS seen as down with its alert and rebuild progress, healthy again after the
// rebuild and the SDS's return, a 403 hiding the actions, log out. Every request the page makes stays on the MDM's origin
// and no CSP violation or script error happens. Screenshots land in test-artifacts/.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import type { Page } from "playwright-core";
import { TestCluster } from "./helpers/cluster.ts";
import { gotoPage, openDashboardBrowser, screenshot, sdsHealth, waitForValue, type DashboardBrowser } from "./helpers/dashboard_browser.ts";
import { requireTool, run } from "./helpers/real_clients.ts";

let c: TestCluster;
let b: DashboardBrowser;
let page: Page;
let ca: string;

async function mdm(path: string, init: { method?: string; auth?: string; body?: unknown } = {}): Promise<{ status: number; text: string }> {
  const res = await fetch(`${c.mdmUrl}${path}`, {
    method: init.method ?? "GET",
    headers: { ...(init.auth ? { authorization: init.auth } : {}), ...(init.body === undefined ? {} : { "content-type": "application/json" }) },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    tls: { ca },
  } as RequestInit);
  return { status: res.status, text: await res.text() };
}

const basic = (user: string, secret: string) => `Basic ${Buffer.from(`${user}:${secret}`).toString("base64")}`;

/** Number of an attribute on the first element matching selector (NaN when absent). */
const attrNumber = (selector: string, name: string) => page.$eval(selector, (el, n) => Number(el.getAttribute(n) ?? "NaN"), name).catch(() => Number.NaN);

beforeAll(async () => {
  requireTool("fio");
  c = await TestCluster.create({
    sdsCount: 3,
    devicesPerSds: 1,
    deviceSize: "512MiB",
    mdmYaml: "heartbeatTimeout: 2s, rebuildGrace: 3s",
    volumes: [{ name: "vol1", size: "256MiB" }],
  });
  await c.start();
  ca = readFileSync(c.caFile, "utf8");
  b = await openDashboardBrowser();
  page = b.page;
}, 120_000);

afterAll(async () => {
  await b?.close();
  await c?.destroy();
});

test("without login: a browser gets the login page, the data routes answer 401", async () => {
  for (const path of ["/dashboard/api/summary", "/api/pf/history?seconds=60", "/api/pf/live", "/api/types/Alert/instances", "/api/types/Sds/instances"]) {
    const r = await mdm(path);
    expect(r.status, path).toBe(401);
    expect(r.text).not.toContain("sds1");
  }
  const res = await page.goto(`${c.mdmUrl}/`);
  expect(page.url()).toBe(`${c.mdmUrl}/dashboard/`);
  expect(res?.headers()["content-security-policy"]).toContain("default-src 'none'");
  await page.waitForSelector("[data-testid=login-form]");
  expect(await page.$("[data-testid=nav-overview]")).toBeNull();
  expect(await page.content()).not.toContain("sds1");
  await page.fill("[data-testid=login-password]", "wrong-password");
  await page.click("[data-testid=login-submit]");
  await page.waitForSelector("[data-testid=login-error]:not([hidden])");
  expect(await page.textContent("[data-testid=login-error]")).toContain("Wrong user name or password");
  await screenshot(page, "login");
  // the session lives in sessionStorage only, never in the URL or a cookie
  expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
  expect(await b.context.cookies()).toEqual([]);
}, 30_000);

test("log in; the topology shows three healthy SDSs with their devices, and the SDC", async () => {
  await page.fill("[data-testid=login-user]", "admin");
  await page.fill("[data-testid=login-password]", "test-admin-pw");
  await page.click("[data-testid=login-submit]");
  await page.waitForSelector("[data-testid=nav-overview].on");
  expect(page.url()).not.toContain("test-admin-pw");
  const stored = await page.evaluate(() => Object.keys(sessionStorage));
  expect(stored).toEqual(["pf.dashboard.session"]);
  await gotoPage(page, "topology");
  const health = await waitForValue("three healthy SDSs", 15_000, () => sdsHealth(page), (h) => Object.keys(h).length === 3 && Object.values(h).every((x) => x === "healthy"));
  expect(health).toEqual({ sds1: "healthy", sds2: "healthy", sds3: "healthy" });
  expect(await page.$$eval("[data-testid=device-row]", (rows) => rows.map((r) => r.getAttribute("data-state")))).toEqual(["Normal", "Normal", "Normal"]);
  expect(await page.$$eval("[data-testid=sdc-row]", (rows) => rows.map((r) => r.getAttribute("data-health")))).toEqual(["healthy"]);
  expect(await page.textContent("[data-testid=sdc-table]")).toContain("vol1 (RW)");
  // live without a reload: a new poll lands every second
  const first = await attrNumber("[data-testid=updated]", "data-updated-ms");
  await waitForValue("the next poll", 2000, () => attrNumber("[data-testid=updated]", "data-updated-ms"), (t) => t > first);
  await screenshot(page, "topology");
}, 30_000);

test("volumes: create, extend, map, unmap and delete through the dialogs", async () => {
  await gotoPage(page, "volumes");
  await page.waitForSelector("[data-testid=volume-row][data-name=vol1]");
  await page.click("[data-testid=vol-create]");
  await page.fill("[data-testid=vol-name]", "dash1");
  await page.fill("[data-testid=vol-size]", "1");
  await screenshot(page, "create-dialog");
  await page.click("[data-testid=dialog-ok]");
  const row = "[data-testid=volume-row][data-name=dash1]";
  await page.waitForSelector(row);
  expect(await attrNumber(row, "data-size-bytes")).toBe(1024 ** 3);

  await page.click(`${row} [data-testid=vol-extend]`);
  await page.fill("[data-testid=vol-new-size]", "2");
  await page.click("[data-testid=dialog-ok]");
  await waitForValue("dash1 at 2 GiB", 5000, () => attrNumber(row, "data-size-bytes"), (v) => v === 2 * 1024 ** 3);

  await page.click(`${row} [data-testid=vol-map]`);
  await page.click("[data-testid=dialog-ok]");
  await page.waitForSelector(`${row} [data-testid=mapping]`);
  expect(await page.textContent(`${row} [data-testid=mapping]`)).toContain("(RW)");

  // a mapped volume cannot be deleted: the MDM's refusal shows in the dialog
  await page.click(`${row} [data-testid=vol-delete]`);
  expect(await page.isDisabled("[data-testid=dialog-ok]")).toBe(true);
  await page.fill("[data-testid=dialog-confirm-name]", "dash1");
  await page.click("[data-testid=dialog-ok]");
  await page.waitForSelector("[data-testid=dialog-error]:not([hidden])");
  expect(await page.textContent("[data-testid=dialog-error]")).toContain("unmap it first");
  await page.click("[data-testid=dialog-cancel]");

  await page.click(`${row} [data-testid=vol-unmap]`);
  await page.click("[data-testid=dialog-ok]");
  await page.waitForSelector(`${row}:not(:has([data-testid=mapping]))`);
  await page.click(`${row} [data-testid=vol-delete]`);
  await page.fill("[data-testid=dialog-confirm-name]", "dash1");
  await page.click("[data-testid=dialog-ok]");
  await page.waitForSelector(row, { state: "detached" });
  expect(await page.$$eval("[data-testid=volume-row]", (rows) => rows.map((r) => r.getAttribute("data-name")))).toEqual(["vol1"]);
}, 60_000);

test("tables page at 25 rows", async () => {
  const token = JSON.parse((await mdm("/api/login", { auth: basic("admin", "test-admin-pw") })).text) as string;
  const auth = basic("admin", token);
  const pools = JSON.parse((await mdm("/api/types/StoragePool/instances", { auth })).text) as { id: string }[];
  const ids: string[] = [];
  try {
    for (let i = 0; i < 30; i++) {
      const body = { name: `page${String(i).padStart(2, "0")}`, storagePoolId: pools[0]!.id, volumeSizeInKb: String(64 * 1024), volumeType: "ThinProvisioned" };
      const r = await mdm("/api/types/Volume/instances", { method: "POST", auth, body });
      expect(r.status, r.text).toBe(200);
      ids.push((JSON.parse(r.text) as { id: string }).id);
    }
    await gotoPage(page, "volumes");
    const info = "[data-testid=volumes-table] .pager-i";
    await waitForValue("31 volumes in pages of 25", 5000, () => page.textContent(info), (t) => t === "1–25 of 31");
    expect(await page.$$("[data-testid=volume-row]")).toHaveLength(25);
    await page.click("[data-testid=volumes-table] .pager button:has-text('Next')");
    expect(await page.textContent(info)).toBe("26–31 of 31");
    expect(await page.$$("[data-testid=volume-row]")).toHaveLength(6);
    await page.fill("[data-testid=volumes-table] input.filter", "page2");
    expect(await page.textContent(info)).toBe("1–10 of 10");
    await page.fill("[data-testid=volumes-table] input.filter", "");
  } finally {
    for (const id of ids) await mdm(`/api/instances/Volume::${id}/action/removeVolume`, { method: "POST", auth, body: { removeMode: "ONLY_ME" } });
  }
  await waitForValue("vol1 alone again", 5000, () => page.$$eval("[data-testid=volume-row]", (rows) => rows.length), (n) => n === 1);
}, 60_000);

test("fio writing to vol1 moves the IOPS chart and the volume's live IO", async () => {
  await gotoPage(page, "overview");
  await page.waitForSelector("[data-testid=health][data-level=OK]", { timeout: 15_000 });
  const fio = run(["fio", "--name=dash", "--ioengine=nbd", `--uri=${c.nbdUri("vol1")}`, "--rw=randwrite", "--bs=4k", "--iodepth=8", "--time_based", "--runtime=8", "--size=256M"], { timeoutMs: 60_000 });
  try {
    const writeIops = await waitForValue("write IOPS on the chart", 10_000, () => attrNumber("#iops-chart", "data-last-write"), (v) => v > 0);
    expect(writeIops).toBeGreaterThan(0);
    const shown = await page.$eval("#iops-chart .lg.s1 b", (el) => el.textContent ?? "");
    expect(shown).not.toBe("0");
    expect(await attrNumber("#bw-chart", "data-last-write")).toBeGreaterThan(0);
    // the 1 minute window, a few seconds into the job
    await page.click("button[data-seconds='60']");
    await page.waitForSelector("button[data-seconds='60'].on");
    await Bun.sleep(3000);
    expect(await attrNumber("#iops-chart", "data-last-write")).toBeGreaterThan(0);
    await screenshot(page, "overview");
    await gotoPage(page, "volumes");
    await waitForValue("vol1's live write IOPS", 8000, () => attrNumber("[data-testid=volume-row][data-name=vol1]", "data-write-iops"), (v) => v > 0);
    await screenshot(page, "volumes");
  } finally {
    const r = await fio;
    expect(r.exitCode, r.stderr).toBe(0);
  }
}, 60_000);

test("kill -9 of an SDS: it shows down, its alert is raised, the rebuild shows progress, rate and ETA", async () => {
  // slow the rebuild down so that the page can be watched while it runs
  const token = JSON.parse((await mdm("/api/login", { auth: basic("admin", "test-admin-pw") })).text) as string;
  const pools = JSON.parse((await mdm("/api/types/StoragePool/instances", { auth: basic("admin", token) })).text) as { id: string }[];
  const throttle = await mdm(`/api/instances/StoragePool::${pools[0]!.id}/action/setRebuildIoPriorityPolicy`, {
    method: "POST",
    auth: basic("admin", token),
    body: { policy: "limitNumOfConcurrentIos", bwLimitPerDeviceInKbps: "16384" },
  });
  expect(throttle.status, throttle.text).toBe(200);

  const argv = c.killRole("sds sds2");
  await gotoPage(page, "topology");
  await waitForValue("sds2 down", 15_000, () => sdsHealth(page), (h) => h.sds2 === "down");
  // the alert follows within the MDM's next alert evaluation (once a second)
  await waitForValue("the health pill at ERR", 5000, () => page.getAttribute("[data-testid=health-pill]", "data-level"), (l) => l === "ERR");

  await gotoPage(page, "rebuild");
  const card = "[data-testid=rebuild-pool][data-name=sp1]";
  const progress = await waitForValue(
    "rebuild under way",
    30_000,
    () => page.$eval(card, (el) => ({ activity: el.getAttribute("data-activity"), pct: Number(el.getAttribute("data-progress")), remaining: Number(el.getAttribute("data-remaining-bytes")) })),
    (p) => p.activity === "Rebuilding" && p.pct > 0 && p.pct < 100 && p.remaining > 0,
  );
  expect(progress.pct).toBeLessThan(100);
  expect(await page.textContent(`${card} [data-testid=rebuild-rate]`)).toMatch(/\/s$/);
  await screenshot(page, "rebuild");
  expect(await page.textContent(`${card} [data-testid=rebuild-eta]`)).not.toBe("—");

  await gotoPage(page, "alerts");
  await page.waitForSelector("[data-testid=alert-row][data-type=SDS_DISCONNECTED]", { timeout: 10_000 });
  expect(await page.textContent("[data-testid=alert-row][data-type=SDS_DISCONNECTED]")).toContain("sds2");
  await screenshot(page, "alerts");

  // the rebuild completes on the two SDSs left; then sds2 comes back and everything is healthy
  await gotoPage(page, "rebuild");
  await waitForValue(
    "the rebuild to finish",
    90_000,
    () => page.$eval(card, (el) => [el.getAttribute("data-state"), el.getAttribute("data-activity")]),
    ([state, activity]) => state === "Normal" && activity === "Idle",
  );
  c.restartRole(argv);
  await gotoPage(page, "topology");
  await waitForValue("three healthy SDSs again", 30_000, () => sdsHealth(page), (h) => Object.values(h).filter((x) => x === "healthy").length === 3);
  await gotoPage(page, "overview");
  await page.waitForSelector("[data-testid=health][data-level=OK]", { timeout: 60_000 });
  await page.waitForSelector("[data-testid=inv-sds][data-value='3/3']");
  await screenshot(page, "healthy-again");
  await gotoPage(page, "alerts");
  await page.waitForSelector("[data-testid=alert-history-row][data-type=SDS_DISCONNECTED]");
}, 240_000);

test("a 403 from the MDM hides every action for the rest of the session", async () => {
  await gotoPage(page, "volumes");
  await page.waitForSelector("[data-testid=volume-row][data-name=vol1] [data-testid=vol-extend]");
  // today's only user may do everything, so the refusal of a Monitor-like role is staged in the browser
  const resize = "**/api/instances/Volume::*/action/setVolumeSize";
  await page.route(resize, (r) => r.fulfill({ status: 403, contentType: "application/json", body: JSON.stringify({ message: "the role Monitor may not change volumes", httpStatusCode: 403, errorCode: 0 }) }));
  await page.click("[data-testid=volume-row][data-name=vol1] [data-testid=vol-extend]");
  await page.click("[data-testid=dialog-ok]");
  await page.waitForSelector("[data-testid=dialog-error]:not([hidden])");
  expect(await page.textContent("[data-testid=dialog-error]")).toContain("may not change volumes");
  await page.click("[data-testid=dialog-cancel]");
  await page.waitForSelector("[data-testid=vol-create]", { state: "hidden" });
  expect(await page.$$("[data-testid=vol-extend]")).toHaveLength(0);
  expect(await page.$$("[data-testid=vol-delete]")).toHaveLength(0);
  await page.unroute(resize);
}, 30_000);

test("every request stayed on the MDM's origin; no CSP violation, script error or failed call but the three refusals asked for", () => {
  expect(b.requests.length).toBeGreaterThan(20);
  const origin = new URL(c.mdmUrl).origin;
  expect(b.requests.filter((u) => new URL(u).origin !== origin)).toEqual([]);
  expect(b.problems).toEqual([]);
  // the refusals the test asked for: the wrong password, deleting a mapped volume, the staged 403
  expect(b.failures).toHaveLength(3);
  expect(b.failures[0]).toBe("401 GET /api/login");
  expect(b.failures[1]).toMatch(/^500 POST \/api\/instances\/Volume::[0-9a-f]{16}\/action\/removeVolume$/);
  expect(b.failures[2]).toMatch(/^403 POST \/api\/instances\/Volume::[0-9a-f]{16}\/action\/setVolumeSize$/);
});

test("log out: the login page again, and the old token no longer opens the data route", async () => {
  const session = await page.evaluate(() => sessionStorage.getItem("pf.dashboard.session"));
  const token = (JSON.parse(session ?? "{}") as { token?: string }).token ?? "";
  expect((await mdm("/dashboard/api/summary", { auth: basic("admin", token) })).status).toBe(200);
  await page.click("[data-testid=logout]");
  await page.waitForSelector("[data-testid=login-form]");
  expect(await page.$("[data-testid=nav-overview]")).toBeNull();
  expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
  await waitForValue("the token revoked", 5000, async () => (await mdm("/dashboard/api/summary", { auth: basic("admin", token) })).status, (s) => s === 401);
}, 30_000);
