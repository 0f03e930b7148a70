// DOM building without innerHTML: h() for HTML elements, s() for SVG, both taking attributes,
// event handlers (on* keys) and children. Text always goes in as text nodes, so names coming
// from the cluster can never become markup, and nothing needs an inline style (the page's
// Content-Security-Policy forbids them; sizes are set through the CSSOM instead).

export type Child = Node | string | number | null | undefined | false;
export type Children = (Child | Child[])[];
type Handler = (ev: Event) => void;
export type Attrs = Record<string, string | number | boolean | null | undefined | Handler>;

function apply(el: Element, attrs: Attrs | null | undefined, children: Children): void {
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (v === true) el.setAttribute(k, "");
      else el.setAttribute(k, String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Children): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  apply(el, attrs, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function s<K extends keyof SVGElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Children): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs, children);
  return el;
}

/** Replace every child of el. */
export function fill(el: Element, ...children: Children): void {
  el.replaceChildren();
  apply(el, null, children);
}

/** Set text only when it changed (keeps selections and avoids layout work every second). */
export function setText(el: Element, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

/** Set (or remove, for null) an attribute only when it changed. */
export function setAttr(el: Element, name: string, value: string | null): void {
  if (value === null) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

/**
 * Replace el's children with these only when the markup differs: regions redrawn every second
 * keep their nodes (and a link or button under the pointer) while nothing changed.
 */
export function redraw(el: Element, ...children: Children): void {
  const next = document.createElement("div");
  apply(next, null, children);
  if (next.innerHTML !== el.innerHTML) el.replaceChildren(...Array.from(next.childNodes));
}
