// The dashboard's static files, embedded in the executable: the page shell and style sheet as
// text imports, the icon, and the browser code bundled at build time (bundle_macro.ts). Each
// asset carries its content type and a strong ETag (content hash), so a browser revalidates
// with If-None-Match and gets 304 instead of the bytes again.

import { createHash } from "node:crypto";
import css from "./assets/app.css" with { type: "text" };
import icon from "./assets/icon.svg" with { type: "text" };
import html from "./assets/index.html" with { type: "text" };
import { bundleBrowserEntry } from "./bundle_macro.ts" with { type: "macro" };

export interface Asset {
  body: string;
  contentType: string;
  etag: string;
}

function asset(body: string, contentType: string): Asset {
  return { body, contentType, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"` };
}

const appJs: string = bundleBrowserEntry("./assets/main.ts");

/** A text import's value; bun-types calls an .html import an HTMLBundle, `type: "text"` makes it a string. */
function embeddedText(v: unknown, what: string): string {
  if (typeof v !== "string" || v.length === 0) throw new Error(`dashboard asset ${what} is not embedded as text`);
  return v;
}

/** The page shell (login form and empty frame; it carries no cluster data). */
export const INDEX_HTML: Asset = asset(embeddedText(html, "index.html"), "text/html; charset=utf-8");

/** Files under /dashboard/assets/, by name. */
export const ASSETS: ReadonlyMap<string, Asset> = new Map([
  ["app.js", asset(appJs, "text/javascript; charset=utf-8")],
  ["app.css", asset(embeddedText(css, "app.css"), "text/css; charset=utf-8")],
  ["icon.svg", asset(embeddedText(icon, "icon.svg"), "image/svg+xml")],
]);
