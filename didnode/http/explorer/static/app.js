/**
 * The explorer's entry point: reads the route from `location` (deep links /did/<did>,
 * /did/<did>?versionId=N, /position/N, /log, /) and wires the search box.
 * @module app
 */
import { getJson } from './api.js';
import { h, replace } from './dom.js';
import { loadPolicy } from './trust.js';
import { renderDid } from './views/did.js';
import { renderHome } from './views/home.js';
import { renderLog } from './views/log.js';
import { renderPosition } from './views/position.js';
import { errorBox, reasonOf } from './views/common.js';

/**
 * Where the search box's text leads: asks the node (`/api/v1/search`), falls back to reading it here.
 * @param {string} q @returns {Promise<string|null>} a path, or null (with a message shown)
 */
async function resolveSearch(q) {
  try {
    const r = await getJson('/api/v1/search', { q });
    if (r.path) return r.path;
    throw new Error(r.reason || 'not a DID, a DID URL or a ledger position');
  } catch (e) {
    if (/^(0|[1-9][0-9]*)$/.test(q)) return `/position/${q}`;
    if (/^did:[a-z0-9]+:[^?#/]+$/.test(q)) return `/did/${q}`;
    throw e;
  }
}

/** Wire the search form: Enter or the button navigates to the page of what was typed. */
function wireSearch() {
  const form = /** @type {HTMLFormElement} */ (document.getElementById('search'));
  const input = /** @type {HTMLInputElement} */ (document.getElementById('q'));
  const msg = /** @type {HTMLElement} */ (document.getElementById('search-msg'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const q = input.value.trim();
    replace(msg);
    if (!q) return;
    try {
      const path = await resolveSearch(q);
      if (path) location.assign(path);
    } catch (e) {
      replace(msg, `Nothing to show for that: ${reasonOf(e)}`);
    }
  });
}

/** Render the page the address names. */
async function route() {
  const main = /** @type {HTMLElement} */ (document.getElementById('main'));
  main.setAttribute('aria-busy', 'true');
  const path = location.pathname;
  const policyP = loadPolicy();
  policyP.catch(() => {}); // failures are shown where the policy is used
  try {
    if (path.startsWith('/did/')) {
      let did;
      try {
        did = decodeURIComponent(path.slice(5));
      } catch {
        did = path.slice(5);
      }
      const v = new URLSearchParams(location.search).get('versionId');
      const input = /** @type {HTMLInputElement} */ (document.getElementById('q'));
      input.value = did;
      await renderDid(main, did, v !== null && /^\d+$/.test(v) ? Number(v) : null, policyP);
    } else if (path === '/log' || path === '/log/') {
      await renderLog(main, policyP);
    } else if (/^\/position\/(0|[1-9][0-9]*)$/.test(path)) {
      await renderPosition(main, Number(path.slice(10)), policyP);
    } else if (path === '/' || path === '/index.html') {
      await renderHome(main);
    } else {
      replace(main, h('h1', {}, 'Not found'), h('p', {}, 'The explorer has no page here.'));
    }
  } catch (e) {
    replace(main, errorBox('This page failed', e));
  }
  main.setAttribute('aria-busy', 'false');
}

wireSearch();
void route();
