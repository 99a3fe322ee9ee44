/**
 * The start page: what the explorer is, the log's size and links.
 * @module views/home
 */
import { getJson } from '../api.js';
import { h, replace, timeEl } from '../dom.js';
import { dl, errorBox } from './common.js';

/** @param {HTMLElement} main @returns {Promise<void>} */
export async function renderHome(main) {
  document.title = 'didnode explorer';
  const facts = h('div');
  replace(main,
    h('h1', {}, 'didnode explorer'),
    h('p', {}, 'Look up a DID, a DID URL or a ledger position in the search box. Every page checks what it shows in this browser against the ledger\u2019s signed, witnessed checkpoint.'),
    facts,
    h('p', {}, h('a', { href: '/log' }, 'The log: checkpoints, growth, inclusion checks')));
  try {
    const log = await getJson('/api/v1/log', { limit: 1 });
    replace(facts, dl([['Log size', `${log.size} entries`], ['Last entry', timeEl(log.time)], ['Origin', log.trust?.origin ?? '?']]));
  } catch (e) {
    replace(facts, errorBox('The node did not answer', e));
  }
  main.setAttribute('aria-busy', 'false');
}
