// Browser entry of the pf dashboard: the login page without a session, else the console. The
// page in view (hash route #/overview, #/topology, …) is fed one Snapshot per poll, started
// POLL_INTERVAL_MS after the previous one started (never two at once), so every page updates
// within two seconds without a reload. A 401 ends the session and returns to the login page.

import { POLL_INTERVAL_MS, HISTORY_DEFAULT_SECONDS, HISTORY_MAX_SECONDS } from "../dashboard_model.ts";
import { clearSession, loadSession, logout, type Session } from "./api.ts";
import { poll, type Snapshot } from "./data.ts";
import { showLogin } from "./login.ts";
import { alertsPage } from "./page_alerts.ts";
import { overviewPage } from "./page_overview.ts";
import { rebuildPage } from "./page_rebuild.ts";
import { topologyPage } from "./page_topology.ts";
import { volumesPage } from "./page_volumes.ts";
import type { AppCtx, Page, PageDef, PageId } from "./page.ts";
import { Shell } from "./shell.ts";

const PAGES: PageDef[] = [overviewPage, topologyPage, volumesPage, rebuildPage, alertsPage];

function pageFromHash(): PageDef {
  const id = location.hash.replace(/^#\/?/, "");
  return PAGES.find((p) => p.id === id) ?? overviewPage;
}

class Console implements AppCtx {
  private readonly shell: Shell;
  private readonly pages = new Map<PageId, Page>();
  private current: PageDef = overviewPage;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private inFlight = false;
  private again = false;
  private stopped = false;
  private forbidden = false;
  private last: Snapshot | null = null;
  private windowSeconds = HISTORY_DEFAULT_SECONDS;
  private readonly onHash = () => this.route();

  constructor(
    readonly session: Session,
    root: HTMLElement,
    private readonly onEnd: (message: string | null) => void,
  ) {
    this.shell = new Shell(PAGES, session.user, () => void this.logout());
    root.replaceChildren(this.shell.el);
    window.addEventListener("hashchange", this.onHash);
    this.route();
  }

  refresh(): void {
    void this.tick();
  }

  forbid(): void {
    this.forbidden = true;
    if (this.last) this.render(this.last);
  }

  canModify(): boolean {
    return !this.forbidden && (this.last?.summary.user.canModify ?? false);
  }

  historySeconds(): number {
    return this.windowSeconds;
  }

  setHistorySeconds(seconds: number): void {
    this.windowSeconds = Math.min(HISTORY_MAX_SECONDS, Math.max(10, Math.round(seconds)));
  }

  private route(): void {
    this.current = pageFromHash();
    let page = this.pages.get(this.current.id);
    if (!page) {
      page = this.current.create(this);
      this.pages.set(this.current.id, page);
    }
    this.shell.show(this.current);
    this.shell.pageRoot.replaceChildren(page.el);
    document.title = `pf · ${this.current.title}`;
    if (this.last) page.update(this.last);
    this.refresh();
  }

  private render(snap: Snapshot): void {
    this.shell.update(snap);
    this.pages.get(this.current.id)?.update(snap);
    document.title = `pf · ${this.current.title} — ${snap.summary.system.name ?? snap.summary.system.id}`;
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    if (this.inFlight) {
      this.again = true;
      return;
    }
    this.inFlight = true;
    if (this.timer !== null) clearTimeout(this.timer);
    const started = performance.now();
    try {
      const r = await poll(this.session, this.current.needs, this.windowSeconds);
      if (this.stopped) return;
      if (r.kind === "logged-out") {
        this.end("Your session has ended; log in again.");
        return;
      }
      if (r.kind === "error") this.shell.lostContact(r.message);
      else {
        this.last = r.snap;
        this.render(r.snap);
      }
    } finally {
      this.inFlight = false;
    }
    if (this.stopped) return;
    if (this.again) {
      this.again = false;
      void this.tick();
      return;
    }
    const wait = Math.max(0, POLL_INTERVAL_MS - (performance.now() - started));
    this.timer = setTimeout(() => void this.tick(), wait);
  }

  private end(message: string | null): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    window.removeEventListener("hashchange", this.onHash);
    clearSession();
    this.onEnd(message);
  }

  private async logout(): Promise<void> {
    const s = this.session;
    this.end(null);
    await logout(s);
  }
}

function start(root: HTMLElement, message: string | null): void {
  const session = loadSession();
  if (session === null) {
    showLogin(root, message, () => start(root, null));
    return;
  }
  new Console(session, root, (m) => start(root, m));
}

const root = document.getElementById("root");
if (root) start(root, null);
