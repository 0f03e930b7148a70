// The console frame around the pages: top bar (product, system name, health pill, time of the
// last update, user, log out), the side navigation with live badges (open problems, recovery
// under way) and the page header with a "lost contact" banner when a poll fails.

import type { Snapshot } from "./data.ts";
import { h, setAttr, setText } from "./dom.ts";
import { clock } from "./format.ts";
import { healthView, LEVEL_TEXT } from "./health_view.ts";
import type { PageDef, PageId } from "./page.ts";
import { toneOfLevel } from "./widgets.ts";

export class Shell {
  readonly el: HTMLElement;
  readonly pageRoot = h("div", { class: "page-root" });
  private readonly title = h("h1");
  private readonly sysName = h("span", { class: "sysname" });
  private readonly pill = h("span", { class: "pill", "data-testid": "health-pill" });
  private readonly updated = h("span", { class: "updated", "data-testid": "updated" }, "connecting…");
  private readonly banner = h("div", { class: "banner", role: "status", "data-testid": "banner" });
  private readonly links = new Map<PageId, { a: HTMLAnchorElement; badge: HTMLElement }>();

  constructor(pages: PageDef[], user: string, onLogout: () => void) {
    const nav = h(
      "nav",
      { class: "side", "aria-label": "Pages" },
      ...pages.map((p) => {
        const badge = h("span", { class: "nav-b" });
        badge.hidden = true;
        const a = h("a", { href: `#/${p.id}`, "data-page": p.id, "data-testid": `nav-${p.id}` }, h("span", null, p.title), badge);
        this.links.set(p.id, { a, badge });
        return a;
      }),
    );
    this.banner.hidden = true;
    this.el = h(
      "div",
      { class: "app" },
      h(
        "header",
        { class: "top" },
        h("a", { class: "brand", href: "#/overview" }, h("img", { src: "/dashboard/assets/icon.svg", alt: "", width: 22, height: 22 }), h("b", null, "pf"), h("span", null, "Storage console")),
        this.sysName,
        h("span", { class: "spacer" }),
        this.pill,
        this.updated,
        h("span", { class: "user", "data-testid": "user" }, user),
        h("button", { class: "btn ghost", type: "button", "data-testid": "logout", onclick: onLogout }, "Log out"),
      ),
      nav,
      h("main", { class: "main" }, h("div", { class: "page-h" }, this.title), this.banner, this.pageRoot),
    );
  }

  show(page: PageDef): void {
    setText(this.title, page.title);
    for (const [id, l] of this.links) l.a.classList.toggle("on", id === page.id);
  }

  update(snap: Snapshot): void {
    const sum = snap.summary;
    const hv = healthView(snap);
    setText(this.sysName, sum.system.name ?? `system ${sum.system.id}`);
    setText(this.pill, `${LEVEL_TEXT[hv.level]}${hv.errors + hv.warnings > 0 ? ` · ${hv.errors + hv.warnings}` : ""}`);
    this.pill.className = `pill ${toneOfLevel(hv.level)}`;
    setAttr(this.pill, "data-level", hv.level);
    setText(this.updated, `Updated ${clock(Date.now())}`);
    setAttr(this.updated, "data-updated-ms", String(Date.now()));
    this.banner.hidden = true;
    this.navBadge("alerts", hv.errors + hv.warnings, hv.level === "ERR" ? "err" : "warn");
    const busy = sum.storagePools.filter((p) => p.rebuild.activity !== "Idle").length;
    this.navBadge("rebuild", busy, "info");
    const down = sum.sds.filter((s) => s.connection === "Disconnected").length;
    this.navBadge("topology", down, "err");
  }

  /** A poll failed: keep the last data on screen, say so. */
  lostContact(message: string): void {
    setText(this.banner, `Lost contact with the MDM (${message}); retrying every second. The figures below are from ${this.updated.textContent?.replace("Updated ", "") ?? "earlier"}.`);
    this.banner.hidden = false;
  }

  private navBadge(id: PageId, n: number, tone: string): void {
    const l = this.links.get(id);
    if (!l) return;
    l.badge.hidden = n === 0;
    setText(l.badge, String(n));
    l.badge.className = `nav-b ${tone}`;
  }
}
