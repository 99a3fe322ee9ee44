/**
 * Which trust policy the pages verify against: a policy the user pinned (pasted into the trust panel,
 * kept in this browser's localStorage, or given as `?trust=` — the policy's JSON, percent-encoded or
 * as unpadded base64url), else the policy the same node serves at /api/v1/trust-policy.
 * @module trust
 */
import { getJson } from './api.js';
import { fromBase64Url, fromUtf8 } from './verify/bytes.js';
import { parsePolicy } from './verify/policy.js';

const STORAGE_KEY = 'didnode-explorer-trust-policy';

/**
 * @typedef {{policy: import('./verify/policy.js').TrustPolicy, json: any, source: string}} LoadedPolicy
 */

/** @param {string} text @returns {any} JSON from `?trust=` text (JSON or base64url of JSON) */
function decodeParam(text) {
  const t = text.trim();
  if (t.startsWith('{')) return JSON.parse(t);
  return JSON.parse(fromUtf8(fromBase64Url(t, 'trust parameter')));
}

/**
 * The policy in force, with where it came from. Throws (a VerifyError or ApiError) when the pinned
 * policy is invalid or none can be had; the caller shows that as "NOT verified".
 * @returns {Promise<LoadedPolicy>}
 */
export async function loadPolicy() {
  const param = new URLSearchParams(location.search).get('trust');
  if (param) {
    const json = decodeParam(param);
    return { policy: await parsePolicy(json), json, source: 'pinned by the ?trust= parameter of this address' };
  }
  let stored = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    stored = null;
  }
  if (stored) {
    const json = JSON.parse(stored);
    return { policy: await parsePolicy(json), json, source: 'pinned in this browser' };
  }
  const json = await getJson('/api/v1/trust-policy');
  return { policy: await parsePolicy(json), json, source: 'served by this node (it vouches for itself: pin a policy you got elsewhere to check it independently)' };
}

/**
 * Pin a pasted policy (checked first) in this browser; `null` unpins.
 * @param {string|null} text @returns {Promise<void>}
 */
export async function pinPolicy(text) {
  if (text === null) {
    localStorage.removeItem(STORAGE_KEY);
    return;
  }
  const json = JSON.parse(text);
  await parsePolicy(json);
  localStorage.setItem(STORAGE_KEY, JSON.stringify(json));
}
