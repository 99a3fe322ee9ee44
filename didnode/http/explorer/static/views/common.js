/**
 * Pieces every page uses: the verification badge, the trust panel, errors in plain words.
 * @module views/common
 */
import { ApiError } from '../api.js';
import { h, replace } from '../dom.js';
import { pinPolicy } from '../trust.js';
import { VerifyError } from '../verify/bytes.js';

/** @returns {HTMLElement} a badge that says verification is under way */
export function pendingBadge() {
  return h('p', { class: 'badge pending', role: 'status', 'aria-live': 'polite', 'data-verified': 'pending' }, 'Verifying\u2026');
}

/**
 * Turn the badge green: only called after every check passed.
 * @param {HTMLElement} badge @param {import('../verify/answers.js').Verified} v @param {string} [extra]
 */
export function setVerified(badge, v, extra = '') {
  badge.className = 'badge ok';
  badge.setAttribute('data-verified', 'true');
  const cos = v.witnesses
    ? `cosigned by ${v.cosigners.length} of ${v.witnesses} witnesses (the trust policy needs ${v.witnessThreshold})`
    : 'cosigned by 0 of 0 witnesses (the trust policy names none)';
  replace(badge, h('span', { class: 'mark', 'aria-hidden': 'true' }, '\u2714 '),
    `Verified under checkpoint ${v.checkpoint.treeSize}, signed by ${v.signers.length} of ${v.keys} checkpoint keys (threshold ${v.threshold}), ${cos}${extra}`);
}

/**
 * Turn the badge red with the exact reason.
 * @param {HTMLElement} badge @param {unknown} err
 */
export function setNotVerified(badge, err) {
  badge.className = 'badge bad';
  badge.setAttribute('data-verified', 'false');
  const kind = err instanceof VerifyError ? err.kind : err instanceof ApiError ? 'API' : 'ERROR';
  badge.setAttribute('data-reason', kind);
  replace(badge, h('span', { class: 'mark', 'aria-hidden': 'true' }, '\u2718 '), `NOT verified: ${reasonOf(err)}`);
}

/** @param {unknown} err @returns {string} the message of an error, in plain words */
export function reasonOf(err) {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/**
 * An error box for a failed page load (e.g. an unknown DID: the resolver's error in plain words).
 * @param {string} title @param {unknown} err @returns {HTMLElement}
 */
export function errorBox(title, err) {
  let detail = reasonOf(err);
  if (err instanceof ApiError) {
    const didError = err.problem?.didError ? String(err.problem.didError).split('#').pop() : '';
    const plain = {
      INVALID_DID: 'This is not a valid DID.',
      NOT_FOUND: 'This DID is not on this ledger.',
      METHOD_NOT_SUPPORTED: 'This node resolves did:dnode DIDs only.',
    }[didError];
    detail = [plain, err.message, err.status ? `(HTTP ${err.status}${didError ? `, ${didError}` : ''})` : ''].filter(Boolean).join(' ');
  }
  return h('div', { class: 'error', role: 'alert' }, h('h2', {}, title), h('p', {}, detail));
}

/**
 * The trust panel: which policy the page verifies against, and a form to pin another.
 * @param {import('../trust.js').LoadedPolicy|null} loaded @returns {HTMLElement}
 */
export function trustPanel(loaded) {
  const area = h('textarea', { id: 'trust-text', rows: 6, spellcheck: 'false', 'aria-describedby': 'trust-help' });
  const msg = h('p', { role: 'status', 'aria-live': 'polite' });
  const pin = async () => {
    try {
      await pinPolicy(/** @type {HTMLTextAreaElement} */ (area).value);
      location.reload();
    } catch (e) {
      replace(msg, `Not pinned: ${reasonOf(e)}`);
    }
  };
  const unpin = async () => {
    await pinPolicy(null);
    location.reload();
  };
  const p = loaded?.policy;
  return h('details', { class: 'trust' },
    h('summary', {}, 'Trust policy'),
    p ? h('dl', {},
      h('dt', {}, 'Source'), h('dd', {}, loaded.source),
      h('dt', {}, 'Network'), h('dd', {}, p.network),
      h('dt', {}, 'Origin'), h('dd', {}, p.origin),
      h('dt', {}, 'Checkpoint keys'), h('dd', {}, `${p.threshold} of ${p.keys.length}: `, p.keys.map((k) => h('code', { class: 'wrap' }, k.kid, ' '))),
      h('dt', {}, 'Witnesses'), h('dd', {}, p.witnesses.length ? `${p.witnessThreshold} of ${p.witnesses.length}: ${p.witnesses.map((w) => w.name).join(', ')}` : 'none'),
    ) : h('p', {}, 'No trust policy could be loaded.'),
    h('label', { for: 'trust-text' }, 'Pin another trust policy (paste its JSON, from didnode trust-policy or didctl trust show):'),
    area,
    h('p', { id: 'trust-help', class: 'help' }, 'A pinned policy is kept in this browser; ?trust= in the address pins one for a single page.'),
    h('div', { class: 'buttons' },
      h('button', { type: 'button', onclick: pin }, 'Pin this policy'),
      h('button', { type: 'button', onclick: unpin }, 'Use the node\u2019s policy')),
    msg);
}

/**
 * A definition list from [term, value] pairs.
 * @param {[string, any][]} rows @returns {HTMLElement}
 */
export function dl(rows) {
  return h('dl', { class: 'facts' }, rows.flatMap(([t, v]) => [h('dt', {}, t), h('dd', {}, v)]));
}
