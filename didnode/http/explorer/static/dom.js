/**
 * Building DOM nodes safely: every string becomes a text node (textContent), never markup.
 * This module is the only place that creates elements; no code of the explorer uses innerHTML.
 * @module dom
 */

const SVG_NS = 'http://www.w3.org/2000/svg';
/** Attributes that may be set from strings (href only from {@link safeHref}). */
const ATTRS = new Set(['id', 'for', 'type', 'name', 'value', 'placeholder', 'role', 'tabindex', 'colspan', 'scope', 'min', 'max', 'step',
  'autocomplete', 'spellcheck', 'rows', 'datetime', 'title', 'lang', 'hidden', 'disabled', 'inputmode', 'aria-label', 'aria-live', 'aria-busy',
  'aria-describedby', 'aria-hidden', 'aria-current', 'aria-labelledby', 'data-verified', 'data-label', 'data-fate', 'data-status', 'data-reason', 'data-kind', 'pattern', 'enterkeyhint']);

/**
 * @typedef {Node|string|number|null|undefined|false} Child
 */

/**
 * Create an HTML element. `props.class` sets the class, `props.href` must be a same-origin path,
 * `props.on*` attaches listeners, other props are allow-listed attributes; children strings are text.
 * @param {string} tag @param {Record<string, any>} [props] @param {...(Child|Child[])} children
 * @returns {HTMLElement}
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

/**
 * Create an SVG element with numeric/string attributes (no style attributes: CSP forbids them).
 * @param {string} tag @param {Record<string, string|number>} [attrs] @param {...(Child|Child[])} children
 * @returns {SVGElement}
 */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'style' || k.startsWith('on') || k === 'href') throw new Error(`svg attribute ${k} is not allowed`);
    el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

/** @param {Element} el @param {Record<string, any>} props */
function setProps(el, props) {
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.setAttribute('class', String(v));
    else if (k === 'href') el.setAttribute('href', safeHref(String(v)));
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (ATTRS.has(k)) el.setAttribute(k, v === true ? '' : String(v));
    else throw new Error(`attribute ${k} is not allowed`);
  }
}

/** @param {Node} el @param {(Child|Child[])[]} children */
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/**
 * Only same-origin absolute paths become links (never javascript:, data: or another host):
 * ledger data such as service endpoints is shown as text, not as a link.
 * @param {string} href @returns {string}
 */
export function safeHref(href) {
  if (!href.startsWith('/') || href.startsWith('//') || href.includes('\\')) throw new Error(`refusing link ${href.slice(0, 40)}`);
  return href;
}

/** @param {Element} el @param {...(Child|Child[])} children replace the children of `el` */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** @param {number} ms @returns {string} an ISO 8601 UTC time, or an em dash */
export function fmtTime(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '\u2014';
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

/** @param {number} ms @returns {HTMLElement} a <time> element */
export function timeEl(ms) {
  return h('time', { datetime: typeof ms === 'number' ? new Date(ms).toISOString() : undefined }, fmtTime(ms));
}

/** @param {string} did @returns {string} the explorer path of a DID */
export const didPath = (did) => `/did/${encodeURIComponent(did).replace(/%3A/gi, ':')}`;

/** @param {number} pos @returns {HTMLElement} a link to a ledger position */
export const posLink = (pos) => h('a', { href: `/position/${pos}` }, String(pos));

/** @param {string} did @returns {HTMLElement} a link to a DID page */
export const didLink = (did) => h('a', { href: didPath(did), class: 'did' }, did);

/** @param {string} title @param {string} id @param {...(Child|Child[])} children @returns {HTMLElement} a page section */
export function section(title, id, ...children) {
  return h('section', { 'aria-labelledby': `${id}-h`, id }, h('h2', { id: `${id}-h` }, title), ...children);
}
