/**
 * RFC 8785 (JCS) canonical JSON for the values a state record holds (strings, integers, lists,
 * objects): members sorted by UTF-16 code units, strings and numbers as ECMAScript serializes them.
 * @module verify/canonical
 */

/**
 * @param {unknown} v @returns {string} the canonical JSON text of `v`
 */
export function canonicalJson(v) {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(/** @type {any} */ (v)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}
