/**
 * A ledger position: the log entry (its operation as text), verified as leaf N of the log under the
 * checkpoint note; also the inclusion-check form of the log page.
 * @module views/position
 */
import { getJson } from '../api.js';
import { didLink, h, replace, timeEl } from '../dom.js';
import { verifyEntryAnswer } from '../verify/answers.js';
import { dl, errorBox, pendingBadge, reasonOf, setNotVerified, setVerified, trustPanel } from './common.js';

/**
 * Fetch, show and verify the entry at `position` into `slot`.
 * @param {HTMLElement} slot @param {number} position @param {Promise<import('../trust.js').LoadedPolicy>} policyP
 * @returns {Promise<void>}
 */
export async function showEntry(slot, position, policyP) {
  let answer;
  try {
    answer = await getJson(`/api/v1/log/entry/${position}`);
  } catch (e) {
    replace(slot, errorBox(`Position ${position} cannot be shown`, e));
    return;
  }
  const badge = pendingBadge();
  replace(slot,
    badge,
    dl([
      ['Position', String(answer.position)],
      ['Time', timeEl(answer.time)],
      ['Operation', `${answer.type ?? '?'}${answer.seq !== undefined ? ` (version ${answer.seq})` : ''}`],
      ['DID', answer.did ? didLink(answer.did) : '\u2014'],
      ['Signed by', h('span', { class: 'wrap' }, (answer.signers ?? []).join(' '))],
      ['Operation hash', h('code', { class: 'wrap hash' }, answer.opHash ?? '')],
    ]),
    h('details', {}, h('summary', {}, 'Payload (canonical JSON, as logged)'), h('pre', { class: 'json', tabindex: 0 }, prettyPayload(answer.payload))));
  try {
    const { policy } = await policyP;
    const { verified } = await verifyEntryAnswer(policy, answer, position, Date.now());
    setVerified(badge, verified, `: entry ${position} is leaf ${position} of the log of ${verified.checkpoint.treeSize} entries`);
  } catch (e) {
    setNotVerified(badge, e);
  }
}

/** @param {unknown} text @returns {string} */
function prettyPayload(text) {
  try {
    return JSON.stringify(JSON.parse(String(text)), null, 2);
  } catch {
    return String(text);
  }
}

/**
 * The inclusion-check form: a position in, the verified entry out.
 * @param {Promise<import('../trust.js').LoadedPolicy>} policyP @returns {HTMLElement}
 */
export function inclusionCheck(policyP) {
  const out = h('div', { class: 'inclusion-result', 'aria-live': 'polite' });
  const input = /** @type {HTMLInputElement} */ (h('input', { id: 'inclusion-pos', type: 'text', inputmode: 'numeric', pattern: '[0-9]+', autocomplete: 'off', enterkeyhint: 'go' }));
  const form = h('form', {
    class: 'inline-form',
    onsubmit: (/** @type {Event} */ ev) => {
      ev.preventDefault();
      const v = input.value.trim();
      if (!/^(0|[1-9][0-9]*)$/.test(v)) {
        replace(out, h('p', { class: 'error', role: 'alert' }, 'A position is a number: 0, 1, 2, \u2026'));
        return;
      }
      void showEntry(out, Number(v), policyP);
    },
  }, h('label', { for: 'inclusion-pos' }, 'Check that position'), input, h('button', { type: 'submit' }, 'is in the log'));
  return h('div', {}, form, out);
}

/**
 * The /position/N page.
 * @param {HTMLElement} main @param {number} position @param {Promise<import('../trust.js').LoadedPolicy>} policyP
 */
export async function renderPosition(main, position, policyP) {
  document.title = `Position ${position} \u2014 didnode explorer`;
  const slot = h('div');
  replace(main, h('h1', {}, `Log entry at position ${position}`), slot);
  await showEntry(slot, position, policyP);
  let loaded = null;
  try {
    loaded = await policyP;
  } catch (e) {
    slot.append(h('p', { class: 'error' }, reasonOf(e)));
  }
  main.append(trustPanel(loaded));
  performance.mark('explorer-ready');
  main.setAttribute('aria-busy', 'false');
}
