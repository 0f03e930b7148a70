// Small building blocks shared by the pages: cards, state badges, progress and usage bars,
// key/value lists and the capacity donut (coloured at the pools' high and critical thresholds).
// Colours come from CSS classes, sizes through the CSSOM.

import type { HealthLevel } from "../dashboard_model.ts";
import { h, s, type Child, type Children } from "./dom.ts";
import { bytes } from "./format.ts";

export type Tone = "ok" | "warn" | "err" | "info" | "muted";

export function toneOfLevel(l: HealthLevel): Tone {
  return l === "OK" ? "ok" : l === "WARN" ? "warn" : "err";
}

export function card(title: string, attrs: Record<string, string>, ...body: Children): HTMLElement {
  return h("section", { class: "card", ...attrs }, h("header", { class: "card-h" }, h("h2", null, title)), h("div", { class: "card-b" }, ...body));
}

export function badge(text: string, tone: Tone, attrs: Record<string, string> = {}): HTMLElement {
  return h("span", { class: `badge ${tone}`, ...attrs }, text);
}

/** A bar filled to pct (0..100) with an optional tone; marks at the given percentages. */
export function bar(pct: number, tone: Tone, marks: readonly number[] = []): HTMLElement {
  const fillEl = h("span", { class: `bar-fill ${tone}` });
  fillEl.style.width = `${Math.min(100, Math.max(0, pct)).toFixed(1)}%`;
  const markEls = marks.map((m) => {
    const el = h("span", { class: "bar-mark", title: `${m} %` });
    el.style.left = `${m}%`;
    return el;
  });
  return h("span", { class: "bar" }, fillEl, ...markEls);
}

/** Tone of a used share against the high and critical thresholds. */
export function usageTone(pct: number, highPct: number, criticalPct: number): Tone {
  return pct >= criticalPct ? "err" : pct >= highPct ? "warn" : "ok";
}

/** "used of total" with a threshold-coloured bar. */
export function usage(usedBytes: number, totalBytes: number, highPct: number, criticalPct: number): HTMLElement {
  const pct = totalBytes > 0 ? (100 * usedBytes) / totalBytes : 0;
  return h(
    "span",
    { class: "usage" },
    bar(pct, usageTone(pct, highPct, criticalPct), [highPct, criticalPct]),
    h("span", { class: "usage-t" }, `${bytes(usedBytes)} / ${bytes(totalBytes)}`),
  );
}

export function kv(rows: [label: string, value: Child, attrs?: Record<string, string>][]): HTMLElement {
  return h("dl", { class: "kv" }, ...rows.map(([k, v, a]) => [h("dt", null, k), h("dd", a ?? null, v)]));
}

const DONUT_R = 52;
const DONUT_C = 2 * Math.PI * DONUT_R;

/** Ring of arcs (fractions of the whole) plus threshold ticks; the centre text is the used share. */
export function donut(parts: { frac: number; cls: string }[], marksPct: readonly number[], centre: string, sub: string): SVGSVGElement {
  const arcs: SVGElement[] = [s("circle", { class: "donut-track", cx: 60, cy: 60, r: DONUT_R })];
  let offset = 0;
  for (const p of parts) {
    const len = Math.max(0, Math.min(1, p.frac)) * DONUT_C;
    if (len > 0) {
      arcs.push(s("circle", { class: `donut-arc ${p.cls}`, cx: 60, cy: 60, r: DONUT_R, "stroke-dasharray": `${len} ${DONUT_C - len}`, "stroke-dashoffset": -offset, transform: "rotate(-90 60 60)" }));
    }
    offset += len;
  }
  for (const m of marksPct) {
    const a = (m / 100) * 2 * Math.PI - Math.PI / 2;
    const [x1, y1, x2, y2] = [60 + 42 * Math.cos(a), 60 + 42 * Math.sin(a), 60 + 62 * Math.cos(a), 60 + 62 * Math.sin(a)];
    arcs.push(s("line", { class: "donut-mark", x1, y1, x2, y2 }, s("title", null, `threshold ${m} %`)));
  }
  return s(
    "svg",
    { class: "donut", viewBox: "-4 -4 128 128", role: "img" },
    ...arcs,
    s("text", { class: "donut-c", x: 60, y: 60 }, centre),
    s("text", { class: "donut-s", x: 60, y: 78 }, sub),
  );
}

export function legend(items: [cls: string, label: string, value: string][]): HTMLElement {
  return h("ul", { class: "legend" }, ...items.map(([cls, label, value]) => h("li", null, h("span", { class: `sw ${cls}` }), h("span", { class: "lg-l" }, label), h("span", { class: "lg-v" }, value))));
}
