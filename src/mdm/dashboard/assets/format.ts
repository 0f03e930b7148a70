// Number and time formatting of the console: sizes in binary units (GiB as the REST API and
// scli count them), rates per second, IOPS with a k suffix, latency in µs or ms, durations as
// "1h 02m 05s" (scli's form), clock times and "5 min ago".

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"] as const;

/** "4.00" -> "4", "1.50" -> "1.5" */
function trim(fixed: string): string {
  return fixed.includes(".") ? fixed.replace(/\.?0+$/, "") : fixed;
}

export function bytes(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return "0 B";
  let i = 0;
  let v = n;
  while (v >= 1024 && i < BYTE_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  const digits = i === 0 || v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${trim(v.toFixed(digits))} ${BYTE_UNITS[i]}`;
}

export function bytesPerSec(n: number): string {
  return `${bytes(n)}/s`;
}

export function iops(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return "0";
  if (n >= 100_000) return `${(n / 1000).toFixed(0)}k`;
  if (n >= 10_000) return `${trim((n / 1000).toFixed(1))}k`;
  return Math.round(n).toLocaleString("en-US");
}

/** Axis form: 500, 2.5k, 15k, 1.2M */
export function compactCount(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return "0";
  if (n >= 1e6) return `${trim((n / 1e6).toFixed(1))}M`;
  if (n >= 1000) return `${trim((n / 1000).toFixed(1))}k`;
  return trim(n.toFixed(1));
}

export function latencyUs(us: number): string {
  if (!Number.isFinite(us) || us <= 0) return "0 µs";
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 10_000) return `${trim((us / 1000).toFixed(2))} ms`;
  return `${trim((us / 1000).toFixed(1))} ms`;
}

export function percent(p: number, digits = 0): string {
  return `${(Number.isFinite(p) ? p : 0).toFixed(digits)} %`;
}

export function duration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return "calculating";
  const t = Math.max(0, Math.round(seconds));
  const hh = Math.floor(t / 3600);
  const mm = Math.floor((t % 3600) / 60);
  const ss = t % 60;
  const p2 = (x: number) => String(x).padStart(2, "0");
  if (hh > 0) return `${hh}h ${p2(mm)}m ${p2(ss)}s`;
  if (mm > 0) return `${mm}m ${p2(ss)}s`;
  return `${ss}s`;
}

/** "19:58:01" in the browser's time zone. */
export function clock(ms: number): string {
  const d = new Date(ms);
  const p2 = (x: number) => String(x).padStart(2, "0");
  return `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
}

/** "2026-05-04 19:58:01" in the browser's time zone. */
export function dateTime(ms: number): string {
  const d = new Date(ms);
  const p2 = (x: number) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} ${clock(ms)}`;
}

/** "12 s ago", "5 min ago", "3 h ago", "2 d ago" relative to nowMs. */
export function ago(ms: number, nowMs: number): string {
  const s = Math.max(0, Math.round((nowMs - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

/** A PowerFlex time field (ISO text, epoch ms or epoch seconds) as epoch ms, or null. */
export function timeMs(v: string | number | null | undefined): number | null {
  if (v === null || v === undefined || v === "") return null;
  if (typeof v === "number") return v < 1e11 ? v * 1000 : v;
  if (/^\d+$/.test(v)) return timeMs(Number(v));
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : t;
}
