/**
 * Verifying what the explorer API answers: a DID's state (checkpoint note under the trust policy,
 * state proof under the note's state root, the decoded state record against what the page shows)
 * and a log entry (note, inclusion proof under the note's log root, the decoded entry against the
 * page). Every failure is a VerifyError whose message says exactly what failed.
 * @module verify/answers
 */
import { VerifyError, fromBase64, malformed, sha256, utf8 } from './bytes.js';
import { checkMatchesNote, parseCheckpointJson, verifyCheckpointSignature } from './checkpoint.js';
import { decodeEntry } from './entry.js';
import { leafHash, parseLogProof, verifyInclusion } from './merkle.js';
import { verifyNote } from './note.js';
import { parseSparseProof, verifyPresent } from './sparse.js';
import { decodeStateRecord } from './state_record.js';

/**
 * @typedef {object} Verified
 * @property {import('./note.js').Checkpoint} checkpoint the verified checkpoint
 * @property {string[]} signers kids of the trusted keys that signed it
 * @property {{name: string, time: number}[]} cosigners trusted witnesses that cosigned it
 * @property {number} keys @property {number} threshold @property {number} witnesses @property {number} witnessThreshold
 */

/**
 * Verify a checkpoint (its note, or the binary signature when the node signs no notes) against the policy.
 * @param {import('./policy.js').TrustPolicy} policy
 * @param {string|null|undefined} note @param {any} checkpointJson @param {number} nowMs
 * @param {boolean} [checkAge] whether the trust policy's staleness bound applies (not for past checkpoints)
 * @returns {Promise<Verified>}
 */
export async function verifyCheckpoint(policy, note, checkpointJson, nowMs, checkAge = true) {
  const signed = checkpointJson ? parseCheckpointJson(checkpointJson) : null;
  /** @type {Verified} */
  let v;
  if (note) {
    const verdict = await verifyNote(policy, note, nowMs);
    if (signed) {
      checkMatchesNote(signed, verdict.checkpoint);
      if (signed.note && signed.note !== note) throw new VerifyError('CLAIM_MISMATCH', 'the checkpoint carries another note than the one sent beside it');
    }
    v = verdict;
  } else {
    if (!signed) throw malformed('the node sent neither a checkpoint note nor a signed checkpoint');
    if (policy.witnessThreshold > 0) throw new VerifyError('BELOW_THRESHOLD', 'the checkpoint has no note, so no witness cosignature; the trust policy requires witnesses');
    if (policy.threshold > 1) throw new VerifyError('BELOW_THRESHOLD', `a checkpoint without a note carries one signature; the trust policy needs ${policy.threshold}`);
    const key = policy.keys.find((k) => k.kid === signed.kid);
    if (!key) throw new VerifyError('UNTRUSTED_SIGNER', `the checkpoint is signed by ${signed.kid}, which the trust policy does not list`);
    await verifyCheckpointSignature(signed, key.publicKey, null);
    v = {
      checkpoint: { origin: policy.origin, network: signed.network, treeSize: signed.treeSize, logRoot: signed.logRoot, stateRoot: signed.stateRoot, timeMs: signed.timeMs },
      signers: [key.kid], cosigners: [], keys: policy.keys.length, threshold: policy.threshold, witnesses: policy.witnesses.length, witnessThreshold: 0,
    };
  }
  if (v.checkpoint.network !== policy.network) throw new VerifyError('CLAIM_MISMATCH', `the checkpoint is of network ${v.checkpoint.network}; the trust policy is for ${policy.network}`);
  const age = nowMs - v.checkpoint.timeMs;
  if (checkAge && age > policy.maxStalenessMs) throw new VerifyError('STALE', `the checkpoint is ${Math.round(age / 1000)} s old; the trust policy allows ${Math.round(policy.maxStalenessMs / 1000)} s`);
  if (-age > 60_000) throw new VerifyError('STALE', `the checkpoint is dated ${Math.round(-age / 1000)} s in the future`);
  return v;
}

/** @param {unknown} a @param {unknown} b @returns {boolean} deep equality of JSON values */
function same(a, b) {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

/** @param {any} v @returns {any} */
function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}

/** @param {import('./state_record.js').KeyRecord} k @returns {object} the key as DidState.to_json shows it */
export function keyJson(k) {
  /** @type {Record<string, unknown>} */
  const out = { id: k.id, type: k.type, publicKeyMultibase: k.publicKeyMultibase, purposes: k.purposes, fate: k.fate, addedSeq: k.addedSeq, addedPos: k.addedPos };
  if (k.endedPos >= 0) { out.endedSeq = k.endedSeq; out.endedPos = k.endedPos; }
  if (k.reason) out.reason = k.reason;
  return out;
}

/** @param {import('./state_record.js').DidState} s @returns {object} the state as DidState.to_json shows it */
export function stateJson(s) {
  /** @type {Record<string, unknown>} */
  const out = {
    did: s.did, seq: s.seq, last: s.last, status: s.status, next: s.next, controllers: s.controllers,
    services: s.services, keys: s.keys.map(keyJson), created: s.created, updated: s.updated,
  };
  if (s.resources.length) out.resources = s.resources;
  return out;
}

/**
 * Check that what the page will show (the API's JSON) is what the verified record says.
 * @param {import('./state_record.js').DidState} s @param {any} answer
 */
export function checkAnswerMatches(s, answer) {
  /** @param {string} what */
  const fail = (what) => new VerifyError('CLAIM_MISMATCH', `the ${what} the node shows are not what its proven state record says`);
  if (answer.state && !same(answer.state, stateJson(s))) {
    const st = answer.state;
    for (const m of ['keys', 'controllers', 'services', 'status', 'seq', 'resources']) {
      if (!same(st[m], /** @type {any} */ (stateJson(s))[m])) throw fail(m === 'seq' ? 'version' : m);
    }
    throw fail('state fields');
  }
  if (Array.isArray(answer.keys)) {
    const shown = answer.keys.map((/** @type {any} */ k) => {
      const { addedTime: _a, endedTime: _e, ...rest } = k;
      return rest;
    });
    if (!same(shown, s.keys.map(keyJson))) throw fail('keys and their fates');
  }
  if (answer.controllers && !same(answer.controllers, s.controllers)) throw fail('controllers');
  if (answer.services && !same(answer.services, s.services)) throw fail('services');
}

/**
 * Verify `/api/v1/did/{did}`'s answer: returns the verified checkpoint and the decoded current state.
 * The page's JSON is compared with the record when it shows the current version.
 * @param {import('./policy.js').TrustPolicy} policy @param {any} answer @param {number} nowMs
 * @returns {Promise<{verified: Verified, state: import('./state_record.js').DidState, current: boolean}>}
 */
export async function verifyDidAnswer(policy, answer, nowMs) {
  const v = answer?.verification;
  if (!v) throw malformed('the node sent no proof for this DID');
  if (v.did !== answer.did) throw new VerifyError('CLAIM_MISMATCH', `the proof is for ${String(v.did).slice(0, 100)}, not for ${answer.did}`);
  if (v.present !== true) throw new VerifyError('CLAIM_MISMATCH', 'the proof does not claim that the DID is present');
  const verified = await verifyCheckpoint(policy, v.note, v.checkpoint, nowMs);
  if (v.treeSize !== undefined && v.treeSize !== verified.checkpoint.treeSize) throw new VerifyError('CLAIM_MISMATCH', `the proof claims tree size ${v.treeSize}, its checkpoint is at ${verified.checkpoint.treeSize}`);
  const record = fromBase64(v.stateRecord, 'state record');
  const proof = parseSparseProof(fromBase64(v.stateProof, 'state proof'));
  await verifyPresent(verified.checkpoint.stateRoot, await sha256(utf8(answer.did)), await sha256(record), proof);
  const state = decodeStateRecord(record);
  if (state.did !== answer.did) throw new VerifyError('CLAIM_MISMATCH', `the proven state record is of ${state.did}, not of ${answer.did}`);
  const current = answer.versionId === undefined || answer.versionId === null || answer.versionId === state.seq;
  if (current) checkAnswerMatches(state, answer);
  return { verified, state, current };
}

/**
 * Verify `/api/v1/log/entry/{position}`'s answer: the entry is leaf `position` of the log under a
 * verified checkpoint, and the fields the page shows are the entry's.
 * @param {import('./policy.js').TrustPolicy} policy @param {any} answer @param {number} position @param {number} nowMs
 * @returns {Promise<{verified: Verified, entry: import('./entry.js').LogEntry}>}
 */
export async function verifyEntryAnswer(policy, answer, position, nowMs) {
  const inc = answer?.inclusion;
  if (!inc) throw malformed('the node sent no inclusion proof for this entry');
  const verified = await verifyCheckpoint(policy, inc.note, inc.checkpoint, nowMs);
  const size = verified.checkpoint.treeSize;
  if (inc.treeSize !== size) throw new VerifyError('CLAIM_MISMATCH', `the proof is for a tree of ${inc.treeSize} entries, the checkpoint of ${size}`);
  if (inc.leafIndex !== position) throw new VerifyError('CLAIM_MISMATCH', `the proof is for position ${inc.leafIndex}, not ${position}`);
  const bytes = fromBase64(answer.entry, 'log entry');
  const entry = decodeEntry(bytes);
  if (entry.position !== position) throw new VerifyError('CLAIM_MISMATCH', `the entry says position ${entry.position}, not ${position}`);
  await verifyInclusion(await leafHash(bytes), position, size, parseLogProof(fromBase64(inc.proof, 'inclusion proof')), verified.checkpoint.logRoot);
  let payload;
  try {
    payload = JSON.parse(entry.payloadText);
  } catch {
    throw malformed('the entry payload is not JSON');
  }
  if (payload?.network !== verified.checkpoint.network) throw new VerifyError('CLAIM_MISMATCH', `the entry is of network ${payload?.network}, the checkpoint of ${verified.checkpoint.network}`);
  if (answer.position !== position || answer.time !== entry.time || (answer.payload !== undefined && answer.payload !== entry.payloadText)) {
    throw new VerifyError('CLAIM_MISMATCH', 'the position, time or payload the node shows are not those of the proven entry');
  }
  const kids = entry.proofs.map((p) => p.kid);
  if (Array.isArray(answer.signers) && !same(answer.signers, kids)) throw new VerifyError('CLAIM_MISMATCH', 'the signers the node shows are not those of the proven entry');
  return { verified, entry };
}
