/**
 * The explorer API client (docs/http.md "Explorer API"): same-origin fetches of `/api/v1/...` only.
 * @module api
 */

/** An API error: HTTP status and the problem document's plain-words detail. */
export class ApiError extends Error {
  /** @param {number} status @param {string} message @param {any} problem */
  constructor(status, message, problem) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem;
  }
}

/**
 * GET a JSON document from the node that served the page.
 * @param {string} path starting with /api/v1/ @param {Record<string, string|number|undefined|null>} [query]
 * @returns {Promise<any>}
 */
export async function getJson(path, query = {}) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
  const qs = params.toString();
  let resp;
  try {
    resp = await fetch(qs ? `${path}?${qs}` : path, { headers: { Accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, `the node could not be reached (${e instanceof Error ? e.message : e})`, null);
  }
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const detail = body?.detail || body?.title || resp.statusText || 'error';
    throw new ApiError(resp.status, `${detail}`, body);
  }
  if (body === null) throw new ApiError(resp.status, 'the node answered something that is not JSON', null);
  return body;
}

/** @param {string} did @returns {string} the API path of a DID */
export const didApi = (did) => `/api/v1/did/${encodeURIComponent(did)}`;
