// A time-series line chart drawn as inline SVG (no canvas, no library): one line and a faint
// area per series over a sliding window that ends at the newest sample (the MDM's clock, so
// browser clock skew does not shift it), a "nice" y scale with four grid lines, time labels,
// and a legend with each series' latest value. The root element carries data-last-<key> and
// data-samples attributes with the numbers shown, for tests and for scripts scraping the page.

import { h, s, setAttr, setText } from "./dom.ts";
import { clock } from "./format.ts";

export interface SeriesSpec {
  key: string;
  label: string;
}

export const READ_WRITE: SeriesSpec[] = [
  { key: "read", label: "read" },
  { key: "write", label: "write" },
];
export const RECOVERY_SERIES: SeriesSpec[] = [
  { key: "rebuild", label: "rebuild" },
  { key: "rebalance", label: "rebalance" },
];

export interface ChartPoint {
  t: number;
  values: number[];
}

const W = 560;
const H = 150;
const PAD = { left: 62, right: 10, top: 8, bottom: 18 };
const TARGET_TICKS = 4;

/** "decimal" steps are 1, 2, 2.5, 5 × 10^n; "binary" ones powers of two (bytes: 256 KiB, 4 MiB). */
export type Scale = "decimal" | "binary";

/** The grid step for values up to max: about TARGET_TICKS steps, each a round number. */
export function niceStep(max: number, scale: Scale): number {
  const raw = max / TARGET_TICKS;
  if (!(raw > 0)) return 1;
  if (scale === "binary") return Math.pow(2, Math.ceil(Math.log2(raw)));
  const e = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5]) if (m * e >= raw) return m * e;
  return 10 * e;
}

export interface ChartOptions {
  id: string;
  /** caption; empty when the card around the chart already names it */
  title: string;
  series: SeriesSpec[];
  format: (v: number) => string;
  /** the y axis labels' format (default: format) */
  axisFormat?: (v: number) => string;
  scale: Scale;
  /** the y axis reaches at least this far (so an idle chart still has a readable scale) */
  minTop: number;
}

export class TimeChart {
  readonly el: HTMLElement;
  private readonly svg: SVGSVGElement;
  private readonly legendValues: HTMLElement[];
  private readonly overlay: HTMLElement;

  private readonly series: SeriesSpec[];
  private readonly format: (v: number) => string;

  constructor(private readonly opts: ChartOptions) {
    const { id, title, series } = opts;
    this.series = series;
    this.format = opts.format;
    this.svg = s("svg", { class: "chart-svg", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title || series.map((x) => x.label).join(", ") });
    this.legendValues = series.map(() => h("b", null, "—"));
    this.overlay = h("div", { class: "chart-overlay" }, "");
    this.el = h(
      "figure",
      { class: "chart", id, "data-testid": id },
      h(
        "figcaption",
        null,
        title ? h("span", { class: "chart-t" }, title) : null,
        h("span", { class: "chart-lg" }, ...series.map((sp, i) => h("span", { class: `lg s${i}` }, h("i", null), `${sp.label} `, this.legendValues[i]!))),
      ),
      h("div", { class: "chart-box" }, this.svg, this.overlay),
    );
  }

  /** Show a message instead of lines ("No data yet" while the history service is missing). */
  message(text: string): void {
    this.svg.replaceChildren();
    setText(this.overlay, text);
    this.overlay.hidden = false;
    for (const v of this.legendValues) setText(v, "—");
    for (const sp of this.series) setAttr(this.el, `data-last-${sp.key}`, null);
    setAttr(this.el, "data-samples", "0");
  }

  update(points: ChartPoint[], windowMs: number): void {
    if (points.length === 0) {
      this.message("No samples yet");
      return;
    }
    this.overlay.hidden = true;
    const endT = points[points.length - 1]!.t;
    const startT = endT - windowMs;
    const shown = points.filter((p) => p.t >= startT);
    let max = this.opts.minTop;
    for (const p of shown) for (const v of p.values) if (v > max) max = v;
    const step = niceStep(max, this.opts.scale);
    const ticks = Math.max(1, Math.ceil(max / step - 1e-9));
    const top = step * ticks;
    const x = (t: number) => PAD.left + ((t - startT) / windowMs) * (W - PAD.left - PAD.right);
    const y = (v: number) => H - PAD.bottom - (Math.max(0, v) / top) * (H - PAD.top - PAD.bottom);
    const nodes: SVGElement[] = [];
    for (let i = 0; i <= ticks; i++) {
      const v = step * i;
      nodes.push(s("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
      nodes.push(s("text", { class: "ylab", x: PAD.left - 6, y: y(v) + 3 }, (this.opts.axisFormat ?? this.format)(v)));
    }
    for (let i = 0; i <= 4; i++) {
      const t = startT + (windowMs * i) / 4;
      nodes.push(s("text", { class: `xlab${i === 0 ? " first" : i === 4 ? " last" : ""}`, x: x(t), y: H - 4 }, clock(t)));
    }
    // a gap of more than three sample intervals breaks the line (the MDM was down, or a poll lost)
    const gapMs = shown.length > 1 ? 3 * Math.max(1000, (shown[shown.length - 1]!.t - shown[0]!.t) / (shown.length - 1)) : Infinity;
    this.series.forEach((_, si) => {
      let line = "";
      let area = "";
      let runStart = -1;
      shown.forEach((p, i) => {
        const px = x(p.t).toFixed(1);
        const py = y(p.values[si] ?? 0).toFixed(1);
        const breaks = i === 0 || p.t - shown[i - 1]!.t > gapMs;
        if (breaks) {
          if (runStart >= 0) area += `L${x(shown[i - 1]!.t).toFixed(1)},${y(0)}L${x(shown[runStart]!.t).toFixed(1)},${y(0)}Z`;
          runStart = i;
          line += `M${px},${py}`;
          area += `M${px},${py}`;
        } else {
          line += `L${px},${py}`;
          area += `L${px},${py}`;
        }
      });
      if (runStart >= 0) area += `L${x(shown[shown.length - 1]!.t).toFixed(1)},${y(0)}L${x(shown[runStart]!.t).toFixed(1)},${y(0)}Z`;
      nodes.push(s("path", { class: `area s${si}`, d: area }));
      nodes.push(s("path", { class: `line s${si}`, d: line }));
    });
    this.svg.replaceChildren(...nodes);
    const last = shown[shown.length - 1] ?? points[points.length - 1]!;
    this.series.forEach((sp, i) => {
      const v = last.values[i] ?? 0;
      setText(this.legendValues[i]!, this.format(v));
      setAttr(this.el, `data-last-${sp.key}`, String(v));
    });
    setAttr(this.el, "data-samples", String(shown.length));
    setAttr(this.el, "data-last-t", String(last.t));
  }
}
