/**
 * The log page: the latest checkpoints with their signers and cosigners (each note verified here),
 * the tree size over time and operations per second as small SVG charts, and an inclusion check of
 * any position.
 * @module views/log
 */
import { getJson } from '../api.js';
import { h, replace, section, timeEl } from '../dom.js';
import { toHex } from '../verify/bytes.js';
import { verifyCheckpoint } from '../verify/answers.js';
import { chart } from './chart.js';
import { dl, errorBox, pendingBadge, reasonOf, setNotVerified, setVerified, trustPanel } from './common.js';
import { table } from './did.js';
import { inclusionCheck } from './position.js';

/**
 * @param {HTMLElement} main @param {Promise<import('../trust.js').LoadedPolicy>} policyP
 * @returns {Promise<void>}
 */
export async function renderLog(main, policyP) {
  document.title = 'Log \u2014 didnode explorer';
  let log;
  try {
    log = await getJson('/api/v1/log');
  } catch (e) {
    replace(main, h('h1', {}, 'Log'), errorBox('The log cannot be shown', e));
    return;
  }
  const badge = pendingBadge();
  const rows = log.checkpoints.map((/** @type {any} */ c) => {
    const cell = h('span', { class: 'cp-verdict', 'data-verified': 'pending' }, '\u2026');
    return { c, cell };
  });
  const series = log.series ?? [];
  let loaded = null;
  try {
    loaded = await policyP;
  } catch {
    loaded = null;
  }
  replace(main,
    h('h1', {}, 'Log'),
    dl([
      ['Size', `${log.size} entries`],
      ['Last entry', timeEl(log.time)],
      ['Signed by', h('span', {}, h('code', { class: 'wrap' }, log.trust?.kid ?? '?'), ' ', h('code', { class: 'wrap' }, log.trust?.fingerprint ?? ''))],
      ['Origin', log.trust?.origin ?? '?'],
    ]),
    badge,
    section('Inclusion check', 'inclusion', inclusionCheck(policyP)),
    section('Latest checkpoints', 'checkpoints', table(['tree size', 'time', 'log root', 'signers', 'cosigners', 'verified here'], rows.map(({ c, cell }) => [
      String(c.treeSize), timeEl(c.timeMs), h('code', { class: 'hash' }, String(c.logRoot).slice(0, 16) + '\u2026'),
      (c.signers ?? []).map((/** @type {any} */ s) => `${s.name} (${s.keyId})`).join(', '),
      (c.cosigners ?? []).length ? c.cosigners.join(', ') : 'none', cell]))),
    section('Tree size over time', 'growth', chart('Tree size', series.map((/** @type {any} */ s) => ({ x: s.timeMs, y: s.treeSize })), 'entries', 'line')),
    section('Operations per second', 'rate', chart('Operations per second', series.filter((/** @type {any} */ s) => s.opsPerSecond !== null).map((/** @type {any} */ s) => ({ x: s.timeMs, y: s.opsPerSecond })), 'operations/s', 'bars')),
    trustPanel(loaded));
  performance.mark('explorer-ready');
  main.setAttribute('aria-busy', 'false');
  if (!loaded) {
    setNotVerified(badge, new Error('no trust policy could be loaded'));
    return;
  }
  const now = Date.now();
  let first = true;
  for (const { c, cell } of rows) {
    try {
      // Older checkpoints are past the staleness bound by design: check their signatures, not their age.
      const v = await verifyCheckpoint(loaded.policy, c.note, null, now, first);
      if (toHex(v.checkpoint.logRoot) !== c.logRoot || v.checkpoint.treeSize !== c.treeSize || toHex(v.checkpoint.stateRoot) !== c.stateRoot) {
        throw new Error('the row shows other roots or size than its signed note');
      }
      if (first) setVerified(badge, v, ': the latest checkpoint note');
      cell.setAttribute('data-verified', 'true');
      replace(cell, `\u2714 ${v.signers.length}/${v.keys} keys, ${v.cosigners.length}/${v.witnesses} witnesses`);
    } catch (e) {
      if (first) setNotVerified(badge, e);
      cell.setAttribute('data-verified', 'false');
      replace(cell, `\u2718 NOT verified: ${reasonOf(e)}`);
    }
    first = false;
  }
  if (!rows.length) setNotVerified(badge, new Error('the node lists no checkpoint'));
}
