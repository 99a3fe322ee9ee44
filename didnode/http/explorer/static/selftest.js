/**
 * The verifier's self-test: runs the shared proof vectors (tests/core/merkle/vectors,
 * tests/core/checkpoint/vectors), checkpoint-note cases and state records through the page's
 * own verifier and reports each verdict, so that a test (or a person, pasting vectors on
 * selftest.html) can compare them with the Python verifier's.
 * @module selftest
 */
import { VerifyError, fromHex } from './verify/bytes.js';
import { parseCheckpointJson, verifyCheckpointSignature } from './verify/checkpoint.js';
import { parseLogProof, verifyConsistency, verifyInclusion } from './verify/merkle.js';
import { verifyNote } from './verify/note.js';
import { parsePolicy } from './verify/policy.js';
import { parseSparseProof, verifyAbsent, verifyPresent } from './verify/sparse.js';
import { decodeStateRecord } from './verify/state_record.js';
import { stateJson } from './verify/answers.js';
import { h, replace } from './dom.js';

/** @param {() => Promise<unknown>} fn @returns {Promise<{verdict: string, detail: string, value?: unknown}>} */
async function outcome(fn) {
  try {
    const value = await fn();
    return { verdict: 'ok', detail: '', value };
  } catch (e) {
    if (e instanceof VerifyError) return { verdict: e.kind, detail: e.message };
    return { verdict: 'EXCEPTION', detail: String(e) };
  }
}

/**
 * One vector of tests/core/merkle/vectors.
 * @param {any} v @returns {Promise<{verdict: string, detail: string}>}
 */
export function runMerkleVector(v) {
  const i = v.input;
  return outcome(async () => {
    if (v.check === 'inclusion') return verifyInclusion(fromHex(i.leaf_hash), i.index, i.size, parseLogProof(fromHex(i.proof)), fromHex(i.root));
    if (v.check === 'consistency') return verifyConsistency(i.size1, i.size2, fromHex(i.root1), fromHex(i.root2), parseLogProof(fromHex(i.proof)));
    if (v.check === 'sparse_present') return verifyPresent(fromHex(i.root), fromHex(i.key), fromHex(i.value), parseSparseProof(fromHex(i.proof)));
    if (v.check === 'sparse_absent') return verifyAbsent(fromHex(i.root), fromHex(i.key), parseSparseProof(fromHex(i.proof)));
    throw new Error(`unknown check ${v.check}`);
  });
}

/**
 * One vector of tests/core/checkpoint/vectors (the binary checkpoint signature).
 * @param {any} v @returns {Promise<{verdict: string, detail: string}>}
 */
export function runCheckpointVector(v) {
  return outcome(async () => verifyCheckpointSignature(parseCheckpointJson(v.checkpoint), fromHex(v.signer_public_key), v.signer_did));
}

/**
 * A checkpoint note against a trust policy.
 * @param {{policy: any, note: string, nowMs: number|null}} c @returns {Promise<{verdict: string, detail: string, value?: unknown}>}
 */
export function runNoteCase(c) {
  return outcome(async () => {
    const v = await verifyNote(await parsePolicy(c.policy), c.note, c.nowMs);
    return { treeSize: v.checkpoint.treeSize, signers: v.signers.length, cosigners: v.cosigners.length };
  });
}

/**
 * A state record (hex): its decoded JSON view, or why it is refused.
 * @param {string} hex @returns {Promise<{verdict: string, detail: string, value?: unknown}>}
 */
export function runStateRecord(hex) {
  return outcome(async () => stateJson(decodeStateRecord(fromHex(hex))));
}

/**
 * Run a list of vectors of any of the kinds above (`kind`: merkle, checkpoint, note, record).
 * @param {{kind: string, name: string, vector: any}[]} items
 * @returns {Promise<{name: string, verdict: string, detail: string, value?: unknown}[]>}
 */
export async function runAll(items) {
  const out = [];
  for (const it of items) {
    const run = { merkle: runMerkleVector, checkpoint: runCheckpointVector, note: runNoteCase, record: runStateRecord }[it.kind];
    const r = run ? await run(it.vector) : { verdict: 'EXCEPTION', detail: `unknown kind ${it.kind}` };
    out.push({ name: it.name, ...r });
  }
  return out;
}

/** The page: paste vectors (a JSON list of {kind, name, vector}) and see each verdict. */
function wirePage() {
  const form = document.getElementById('selftest');
  if (!form) return;
  const area = /** @type {HTMLTextAreaElement} */ (document.getElementById('vectors'));
  const out = /** @type {HTMLElement} */ (document.getElementById('results'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let items;
    try {
      items = JSON.parse(area.value);
    } catch (e) {
      replace(out, h('p', { class: 'error' }, `Not JSON: ${e}`));
      return;
    }
    const results = await runAll(items);
    replace(out, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'vector'), h('th', {}, 'verdict'), h('th', {}, 'detail'))),
      h('tbody', {}, results.map((r) => h('tr', {}, h('td', {}, r.name), h('td', {}, r.verdict), h('td', {}, r.detail))))));
  });
}

wirePage();
