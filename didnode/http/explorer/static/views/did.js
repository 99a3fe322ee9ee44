/**
 * The DID page: document, key timeline with fates, operation history (paginated), controllers, the
 * DIDs it controls (counts by status, searchable list), services, published status lists, data
 * streams, and the in-browser verification of its current state.
 * @module views/did
 */
import { didApi, getJson } from '../api.js';
import { didLink, h, posLink, replace, section, timeEl } from '../dom.js';
import { verifyDidAnswer } from '../verify/answers.js';
import { dl, errorBox, pendingBadge, reasonOf, setNotVerified, setVerified, trustPanel } from './common.js';

const HISTORY_HEAD = ['position', 'time', 'operation', 'version', 'signed by'];
const FATE_WORDS = { current: 'current', rotated: 'rotated', revoked: 'revoked' };

/**
 * Render the page of `did` (at `versionId`, or the latest) into `main`.
 * @param {HTMLElement} main @param {string} did @param {number|null} versionId
 * @param {Promise<import('../trust.js').LoadedPolicy>} policyP
 * @returns {Promise<void>}
 */
export async function renderDid(main, did, versionId, policyP) {
  document.title = `${did} \u2014 didnode explorer`;
  let answer;
  try {
    answer = await getJson(didApi(did), { versionId });
  } catch (e) {
    replace(main, h('h1', { class: 'wrap' }, did), errorBox('This DID cannot be shown', e));
    return;
  }
  const badge = pendingBadge();
  const history = historySection(did);
  const fleet = answer.controlled?.total ? controlledSection(did, answer.controlled) : null;
  const streams = h('div');
  const res = answer.resolution ?? {};
  const deactivated = answer.state?.status === 'deactivated' || res.didDocumentMetadata?.deactivated === true;
  replace(main,
    h('h1', { class: 'wrap' }, h('span', { class: 'kind' }, 'DID '), answer.did),
    h('p', { class: 'status-line' },
      h('span', { class: `status ${deactivated ? 'deactivated' : 'active'}`, 'data-status': deactivated ? 'deactivated' : 'active' }, deactivated ? 'deactivated' : 'active'),
      ` version ${answer.versionId ?? answer.state?.seq ?? '?'}`,
      answer.state?.created ? [' \u00b7 created at position ', posLink(answer.state.created.pos), ' (', timeEl(answer.state.created.time), ')'] : null,
      answer.state?.updated ? [' \u00b7 updated at position ', posLink(answer.state.updated.pos), ' (', timeEl(answer.state.updated.time), ')'] : null),
    versionNav(answer),
    badge,
    keysSection(answer.keys ?? answer.state?.keys ?? []),
    section('Controllers', 'controllers', listOrNone((answer.controllers ?? []).map(didLink), 'No controller: the DID controls itself.')),
    fleet,
    section('Services', 'services', servicesTable(answer.services ?? [])),
    resourcesSection(answer.did, answer.resources ?? []),
    streams,
    history.el,
    section('DID document', 'document',
      h('details', {}, h('summary', {}, 'The resolved document (JSON)'), h('pre', { class: 'json', tabindex: 0 }, JSON.stringify(res.didDocument ?? null, null, 2)))),
    await trustOrNull(policyP));
  const verifying = verify(badge, policyP, answer);
  await Promise.all([history.load(), fleet?.load(), loadStreams(did, streams)]);
  performance.mark('explorer-ready');
  main.setAttribute('aria-busy', 'false');
  await verifying;
}

/** @param {Promise<import('../trust.js').LoadedPolicy>} p @returns {Promise<HTMLElement>} */
async function trustOrNull(p) {
  try {
    return trustPanel(await p);
  } catch {
    return trustPanel(null);
  }
}

/**
 * @param {HTMLElement} badge @param {Promise<import('../trust.js').LoadedPolicy>} policyP @param {any} answer
 */
async function verify(badge, policyP, answer) {
  try {
    const { policy } = await policyP;
    const { verified, state, current } = await verifyDidAnswer(policy, answer, Date.now());
    const extra = current
      ? `: the state record of version ${state.seq} is proven, and the keys, fates, controllers and services shown are the record\u2019s`
      : `: the current state (version ${state.seq}) is proven; version ${answer.versionId} shown here is the node\u2019s rendering of a past version (its operations are proven one by one from the history)`;
    setVerified(badge, verified, extra);
  } catch (e) {
    setNotVerified(badge, e);
  }
  performance.mark('explorer-verified');
  badge.closest('main')?.setAttribute('data-verified', badge.getAttribute('data-verified') ?? 'false');
}

/** @param {any} answer @returns {HTMLElement|null} links to the neighbouring versions */
function versionNav(answer) {
  const v = answer.versionId;
  if (typeof v !== 'number') return null;
  const base = `/did/${answer.did}`;
  return h('nav', { class: 'versions', 'aria-label': 'Versions' },
    v > 0 ? h('a', { href: `${base}?versionId=${v - 1}` }, `\u2190 version ${v - 1}`) : null,
    ' ',
    h('a', { href: base }, 'latest version'));
}

/** @param {HTMLElement[]} items @param {string} none @returns {HTMLElement} */
function listOrNone(items, none) {
  return items.length ? h('ul', { class: 'plain' }, items.map((i) => h('li', {}, i))) : h('p', { class: 'muted' }, none);
}

/**
 * The key history as a timeline: each key with when it was added and, if it ended, how (rotated or revoked).
 * @param {any[]} keys @returns {HTMLElement}
 */
function keysSection(keys) {
  const sorted = [...keys].sort((a, b) => a.addedPos - b.addedPos);
  const items = sorted.map((k) => h('li', { class: `key fate-${k.fate}`, 'data-fate': k.fate },
    h('div', { class: 'key-head' },
      h('code', { class: 'wrap key-id' }, k.id),
      ' ',
      h('span', { class: `fate ${k.fate}` }, FATE_WORDS[/** @type {'current'} */ (k.fate)] ?? String(k.fate))),
    h('p', { class: 'key-meta' }, `${k.type} \u00b7 ${(k.purposes ?? []).join(', ')}`),
    h('p', { class: 'key-event' }, 'added at position ', posLink(k.addedPos), ' (version ', String(k.addedSeq), ', ', timeEl(k.addedTime), ')'),
    k.endedPos >= 0 && k.endedPos !== undefined
      ? h('p', { class: 'key-event' }, `${k.fate} at position `, posLink(k.endedPos), ' (version ', String(k.endedSeq), ', ', timeEl(k.endedTime), ')',
        k.reason ? [': ', h('q', {}, k.reason)] : null)
      : null,
    h('p', { class: 'key-mb' }, h('code', { class: 'wrap' }, k.publicKeyMultibase))));
  return section('Keys', 'keys', items.length ? h('ol', { class: 'timeline' }, items) : h('p', {}, 'No keys.'));
}

/** @param {any[]} services @returns {HTMLElement} */
function servicesTable(services) {
  if (!services.length) return h('p', { class: 'muted' }, 'No services.');
  return table(['id', 'type', 'endpoint'], services.map((s) => [
    h('code', { class: 'wrap' }, s.id), s.type, h('code', { class: 'wrap endpoint' }, s.serviceEndpoint)]));
}

/** @param {string} did @param {any[]} resources @returns {HTMLElement|null} */
function resourcesSection(did, resources) {
  if (!resources.length) return null;
  return section('Status lists and resources', 'resources', table(['id', 'media type', 'position', 'version', 'time', 'hash'], resources.map((r) => [
    h('a', { href: `/status/${did}/${encodeURIComponent(r.id)}` }, r.id), r.mediaType, posLink(r.pos), String(r.seq), timeEl(r.time), h('code', { class: 'wrap hash' }, r.hash)])));
}

/**
 * @param {string[]} head @param {any[][]} rows @param {HTMLElement} [body]
 * @returns {HTMLElement} a table inside a horizontally scrollable, focusable wrapper
 */
export function table(head, rows, body = h('tbody')) {
  for (const r of rows) body.append(h('tr', {}, r.map((c, i) => h('td', { 'data-label': head[i] }, c))));
  return h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': head.join(', ') },
    h('table', {}, h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))), body));
}

/** @param {string} did @returns {{el: HTMLElement, load: () => Promise<void>}} the paginated operation history */
function historySection(did) {
  const body = h('tbody');
  const info = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' }, 'Loading\u2026');
  const more = h('button', { type: 'button', hidden: true }, 'Show older operations');
  let after = null;
  let shown = 0;
  const load = async () => {
    try {
      const page = await getJson(`${didApi(did)}/history`, { after, limit: 50 });
      for (const e of page.entries) {
        body.append(h('tr', {}, [posLink(e.position), timeEl(e.time), e.type, String(e.seq), h('span', { class: 'wrap' }, (e.signers ?? []).join(' '))]
          .map((c, i) => h('td', { 'data-label': HISTORY_HEAD[i] }, c))));
      }
      shown += page.entries.length;
      after = page.next;
      more.hidden = page.next === null || page.next === undefined;
      replace(info, `${shown} of ${page.total} operations`);
    } catch (e) {
      replace(info, `The history could not be loaded: ${reasonOf(e)}`);
    }
  };
  more.addEventListener('click', () => { void load(); });
  const el = section('Operation history', 'history', info, table(HISTORY_HEAD, [], body), more);
  return { el, load };
}

/**
 * The DIDs this DID controls: counts by status, a prefix search, a status filter and a paginated list.
 * @param {string} did @param {{active: number, deactivated: number, total: number}} counts
 * @returns {HTMLElement & {load: () => Promise<void>}}
 */
function controlledSection(did, counts) {
  const list = h('ul', { class: 'plain fleet', id: 'fleet-list' });
  const info = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
  const q = /** @type {HTMLInputElement} */ (h('input', { id: 'fleet-q', type: 'search', placeholder: 'did:dnode:Qm\u2026', autocomplete: 'off', spellcheck: 'false' }));
  const status = /** @type {HTMLSelectElement} */ (h('select', { id: 'fleet-status' },
    h('option', { value: '' }, 'any status'), h('option', { value: 'active' }, 'active'), h('option', { value: 'deactivated' }, 'deactivated')));
  const more = h('button', { type: 'button', hidden: true }, 'Show more');
  let after = null;
  let shown = 0;
  const load = async (fresh = false) => {
    if (fresh) { after = null; shown = 0; list.replaceChildren(); }
    try {
      const page = await getJson(`${didApi(did)}/controlled`, { after, limit: 100, q: q.value.trim() || undefined, status: status.value || undefined });
      for (const d of page.dids) list.append(h('li', {}, didLink(d.did), ' ', h('span', { class: `status ${d.status}`, 'data-status': d.status }, d.status)));
      shown += page.dids.length;
      after = page.next;
      more.hidden = !page.next;
      replace(info, `${shown} shown${page.next ? ', more follow' : ''}`);
    } catch (e) {
      replace(info, `The list could not be loaded: ${reasonOf(e)}`);
    }
  };
  const form = h('form', { class: 'fleet-search', role: 'search', onsubmit: (/** @type {Event} */ ev) => { ev.preventDefault(); void load(true); } },
    h('label', { for: 'fleet-q' }, 'DID prefix'), q, h('label', { for: 'fleet-status' }, 'Status'), status, h('button', { type: 'submit' }, 'Filter'));
  more.addEventListener('click', () => { void load(); });
  const el = section(`Controls ${counts.total} DIDs`, 'controlled',
    dl([['active', String(counts.active)], ['deactivated', String(counts.deactivated)], ['total', String(counts.total)]]),
    form, info, list, more);
  return Object.assign(el, { load: () => load(true) });
}

/** @param {string} did @param {HTMLElement} slot */
async function loadStreams(did, slot) {
  let page;
  try {
    page = await getJson(`${didApi(did)}/streams`);
  } catch {
    return; // a node without data anchoring: no section
  }
  if (!page.streams?.length) return;
  const parts = [table(['stream', 'next sequence number', 'anchored heads', 'latest anchor', 'time'], page.streams.map((/** @type {any} */ s) => [
    h('code', { class: 'wrap' }, s.stream), String(s.nextSeq), String(s.heads), s.lastPosition !== undefined && s.lastPosition !== null ? posLink(s.lastPosition) : '\u2014', timeEl(s.lastTime)]))];
  if (page.evidence?.length) {
    // Shown, not verified here: the two signed heads are the proof (docs/data.md, "Equivocation evidence").
    parts.push(h('h3', { id: 'evidence-h' }, 'Equivocation evidence'),
      h('p', {}, 'This device signed two different heads over the same sequence numbers; this node refused the second and kept it. Both signed heads are the proof.'),
      table(['stream', 'first sequence number', 'anchored head at', 'refused head (SHA-256)'], page.evidence.map((/** @type {any} */ e) => [
        h('code', { class: 'wrap' }, e.stream), String(e.first), posLink(e.anchoredPosition), h('code', { class: 'wrap' }, e.refusedHeadHash)])));
  }
  replace(slot, section('Data streams', 'streams', ...parts));
}
