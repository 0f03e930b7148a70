// Browser side of the dashboard tests: Debian's chromium driven by playwright-core (no browser
// download), a context that accepts the MDM's self-signed certificate (tests only), a record of
// every request the page makes and every CSP or script error it hits, screenshots under
// test-artifacts/, and small waits on the data attributes the pages expose. A missing chromium
// fails the test with the install command; it never skips.

import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
export const ARTIFACTS = resolve(import.meta.dir, "../../test-artifacts");

const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

export interface DashboardBrowser {
  browser: Browser;
  context: BrowserContext;
  page: Page;
  /** every URL the page requested */
  requests: string[];
  /** console errors (but the browser's own "Failed to load resource" lines), page errors, CSP violations */
  problems: string[];
  /** responses with a status of 400 or more, as "STATUS METHOD PATH" */
  failures: string[];
  close(): Promise<void>;
}

export async function openDashboardBrowser(): Promise<DashboardBrowser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run installs it)`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  try {
    // the MDM's certificate is self-signed; only this test context skips the check
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const requests: string[] = [];
    const problems: string[] = [];
    const failures: string[] = [];
    page.on("request", (r) => requests.push(r.url()));
    page.on("response", (r) => {
      if (r.status() >= 400) failures.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
    });
    page.on("console", (m) => {
      // a failed fetch is logged by chromium too; `failures` has it with its status
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
    return { browser, context, page, requests, problems, failures, close: () => browser.close() };
  } catch (e) {
    await browser.close();
    throw e;
  }
}

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `dashboard-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Go to a page of the console by its hash route and wait until it shows data. */
export async function gotoPage(page: Page, id: "overview" | "topology" | "volumes" | "rebuild" | "alerts"): Promise<void> {
  await page.click(`[data-testid=nav-${id}]`);
  await page.waitForSelector(`[data-testid=nav-${id}].on`);
  await page.waitForSelector("[data-testid=updated][data-updated-ms]");
}

/** Poll a value from the page until it satisfies ok (the pages refresh every second). */
export async function waitForValue<T>(what: string, timeoutMs: number, read: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    last = await read();
    if (ok(last)) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value ${JSON.stringify(last)}`);
    await Bun.sleep(200);
  }
}

/** data-health of every SDS row, by name. */
export async function sdsHealth(page: Page): Promise<Record<string, string>> {
  return page.$$eval("[data-testid=sds-row]", (rows) => Object.fromEntries(rows.map((r) => [r.getAttribute("data-name") ?? "", r.getAttribute("data-health") ?? ""])));
}
