// A dense data table that is fed new rows every second: click a header to sort, an optional
// filter box, and pages of TABLE_PAGE_ROWS rows. Sort, filter and page survive updates; a row
// whose markup did not change keeps its DOM node, so a button under the pointer is not swapped
// out between mouse down and mouse up.

import { TABLE_PAGE_ROWS } from "../dashboard_model.ts";
import { h, setText, type Child } from "./dom.ts";

export interface Column<R> {
  label: string;
  cell: (r: R) => Child | Child[];
  /** sort key; a column without one does not sort */
  sort?: (r: R) => number | string;
  cls?: string;
}

export interface TableOptions<R> {
  id: string;
  columns: Column<R>[];
  rowKey: (r: R) => string;
  rowAttrs?: (r: R) => Record<string, string>;
  /** rows drawn under a row (an SDS's devices), paged with it */
  subRows?: (r: R) => HTMLTableRowElement[];
  /** text searched by the filter box; no filter box without it */
  filterText?: (r: R) => string;
  empty: string;
  pageRows?: number;
}

export class DataTable<R> {
  readonly el: HTMLElement;
  /** the row above the table (filter box on the right); a page may put buttons in it */
  readonly tools = h("div", { class: "table-tools" });
  private readonly tbody = h("tbody");
  private readonly info = h("span", { class: "pager-i" });
  private readonly prev: HTMLButtonElement;
  private readonly next: HTMLButtonElement;
  private readonly heads: HTMLTableCellElement[];
  private readonly pageRows: number;
  private rows: R[] = [];
  private page = 0;
  private sortCol = -1;
  private sortDir: 1 | -1 = 1;
  private query = "";

  constructor(private readonly opts: TableOptions<R>) {
    this.pageRows = opts.pageRows ?? TABLE_PAGE_ROWS;
    this.heads = opts.columns.map((c, i) =>
      h("th", { class: `${c.cls ?? ""}${c.sort ? " sortable" : ""}`, onclick: c.sort ? () => this.sortBy(i) : undefined }, c.label),
    );
    this.prev = h("button", { class: "btn sm", type: "button", onclick: () => this.go(-1) }, "‹ Prev");
    this.next = h("button", { class: "btn sm", type: "button", onclick: () => this.go(1) }, "Next ›");
    const filter = opts.filterText
      ? h("input", {
          class: "filter",
          type: "search",
          placeholder: "Filter",
          "aria-label": "Filter rows",
          oninput: (e: Event) => {
            this.query = (e.target as HTMLInputElement).value.trim().toLowerCase();
            this.page = 0;
            this.render();
          },
        })
      : null;
    if (filter) this.tools.append(h("span", { class: "spacer" }), filter);
    this.el = h(
      "div",
      { class: "table-wrap", id: opts.id, "data-testid": opts.id },
      this.tools,
      h("table", { class: "grid-t" }, h("thead", null, h("tr", null, ...this.heads)), this.tbody),
      h("div", { class: "pager" }, this.info, this.prev, this.next),
    );
  }

  update(rows: R[]): void {
    this.rows = rows;
    this.render();
  }

  private sortBy(i: number): void {
    this.sortDir = this.sortCol === i ? (this.sortDir === 1 ? -1 : 1) : 1;
    this.sortCol = i;
    this.heads.forEach((th, j) => th.setAttribute("aria-sort", j === i ? (this.sortDir === 1 ? "ascending" : "descending") : "none"));
    this.render();
  }

  private go(delta: number): void {
    this.page += delta;
    this.render();
  }

  private visible(): R[] {
    const f = this.opts.filterText;
    let rows = this.query && f ? this.rows.filter((r) => f(r).toLowerCase().includes(this.query)) : [...this.rows];
    const key = this.opts.columns[this.sortCol]?.sort;
    if (key) {
      const dir = this.sortDir;
      rows = rows.sort((a, b) => {
        const ka = key(a);
        const kb = key(b);
        return (ka < kb ? -1 : ka > kb ? 1 : 0) * dir;
      });
    }
    return rows;
  }

  private render(): void {
    const rows = this.visible();
    const pages = Math.max(1, Math.ceil(rows.length / this.pageRows));
    this.page = Math.min(Math.max(0, this.page), pages - 1);
    const from = this.page * this.pageRows;
    const shown = rows.slice(from, from + this.pageRows);
    const old = new Map<string, HTMLTableRowElement>();
    for (const tr of Array.from(this.tbody.rows)) if (tr.dataset.key) old.set(tr.dataset.key, tr);
    const out: HTMLTableRowElement[] = [];
    for (const r of shown) {
      const key = this.opts.rowKey(r);
      const fresh = h("tr", { "data-key": key, ...(this.opts.rowAttrs?.(r) ?? {}) }, ...this.opts.columns.map((c) => h("td", c.cls ? { class: c.cls } : null, ...[c.cell(r)].flat())));
      const prior = old.get(key);
      out.push(prior && prior.outerHTML === fresh.outerHTML ? prior : fresh);
      if (this.opts.subRows) {
        for (const [i, sub] of this.opts.subRows(r).entries()) {
          const subKey = `${key}/${i}`;
          sub.dataset.key = subKey;
          const p = old.get(subKey);
          out.push(p && p.outerHTML === sub.outerHTML ? p : sub);
        }
      }
    }
    if (shown.length === 0) out.push(h("tr", { class: "empty" }, h("td", { colspan: this.opts.columns.length }, this.query ? "No row matches the filter." : this.opts.empty)));
    const same = out.length === this.tbody.rows.length && out.every((tr, i) => this.tbody.rows[i] === tr);
    if (!same) this.tbody.replaceChildren(...out);
    setText(this.info, rows.length === 0 ? "0 rows" : `${from + 1}–${from + shown.length} of ${rows.length}`);
    this.prev.disabled = this.page === 0;
    this.next.disabled = this.page >= pages - 1;
  }
}
