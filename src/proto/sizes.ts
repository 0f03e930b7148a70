// Human size strings ("1GiB", "512M", "64k", "1073741824") <-> bytes. Binary units throughout:
// storage operators read "1G" as GiB, as PowerFlex's GB figures do. Also durations ("5s",
// "500ms", "2m", "1h", a bare number = ms) -> whole milliseconds.

const UNIT: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
};

/** Parse a size; returns null when the text is not a size (callers turn that into their error). */
export function parseSizeBytes(text: string | number): number | null {
  if (typeof text === "number") return Number.isSafeInteger(text) && text >= 0 ? text : null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return null;
  const unit = UNIT[m[2]!.toLowerCase()];
  if (unit === undefined) return null;
  const bytes = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : null;
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1 && v % 1024 === 0) {
    v /= 1024;
    i++;
  }
  return `${v} ${units[i]}`;
}

/** Split "HOST:PORT" (IPv6 as "[::1]:PORT"); defaultPort when the port is omitted. */
export function parseHostPort(text: string, defaultPort: number): { host: string; port: number } | null {
  const m = /^(\[[^\]]+\]|[^:\s]+)(?::(\d{1,5}))?$/.exec(text.trim());
  if (!m) return null;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return null;
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

const DURATION_UNIT_MS: Record<string, number> = { "": 1, ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 };

/** Parse a duration into whole milliseconds; null when the text is not one (callers word the error). */
export function parseDurationMs(text: string | number): number | null {
  if (typeof text === "number") return Number.isSafeInteger(text) && text >= 0 ? text : null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return null;
  const unit = DURATION_UNIT_MS[m[2]!.toLowerCase()];
  if (unit === undefined) return null;
  const ms = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(ms) ? ms : null;
}
