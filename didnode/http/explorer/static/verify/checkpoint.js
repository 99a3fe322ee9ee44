/**
 * The binary checkpoint signature (docs/transparency.md §3): `"didnode/checkpoint/v1" || 0x00 || body`
 * with body = `u8 len(network) || network || u64 tree_size || log_root || state_root || u64 time_ms`,
 * and the JSON form of a signed checkpoint. Used when a node serves no note, and by the shared
 * checkpoint vectors.
 * @module verify/checkpoint
 */
import { VerifyError, concat, ed25519Verify, equal, fromHex, malformed, toHex, utf8 } from './bytes.js';
import { NETWORK_RE } from './note.js';

const MEMBERS = ['kid', 'logRoot', 'network', 'signature', 'stateRoot', 'timeMs', 'treeSize'];

/**
 * @typedef {{network: string, treeSize: number, logRoot: Uint8Array, stateRoot: Uint8Array, timeMs: number,
 *   kid: string, signature: Uint8Array, note: string}} SignedCheckpoint
 */

/** @param {any} d @param {string} m @returns {number} */
function uint(d, m) {
  const v = d[m];
  if (!Number.isSafeInteger(v) || v < 0) throw malformed(`checkpoint ${m} must be a non-negative integer`);
  return v;
}

/**
 * Parse the JSON form strictly (exact members, lowercase hex).
 * @param {any} d @returns {SignedCheckpoint}
 */
export function parseCheckpointJson(d) {
  if (d === null || typeof d !== 'object' || Array.isArray(d)) throw malformed('a checkpoint must be a JSON object');
  const names = Object.keys(d).sort();
  if (names.join() !== MEMBERS.join() && names.join() !== [...MEMBERS, 'note'].sort().join()) {
    throw malformed(`checkpoint JSON members must be exactly ${MEMBERS}, got ${names}`);
  }
  if (typeof d.network !== 'string' || !NETWORK_RE.test(d.network)) throw malformed('checkpoint network is not a network id');
  if (typeof d.kid !== 'string' || !d.kid) throw malformed('checkpoint kid must be a non-empty string');
  /** @param {string} m @param {number} n */
  const hex = (m, n) => {
    const b = fromHex(d[m], `checkpoint ${m}`);
    if (b.length !== n) throw malformed(`checkpoint ${m} must be ${n} bytes`);
    return b;
  };
  if ('note' in d && (typeof d.note !== 'string' || !d.note)) throw malformed('checkpoint note must be a non-empty signed note');
  return {
    network: d.network, treeSize: uint(d, 'treeSize'), logRoot: hex('logRoot', 32), stateRoot: hex('stateRoot', 32),
    timeMs: uint(d, 'timeMs'), kid: d.kid, signature: hex('signature', 64), note: d.note ?? '',
  };
}

/** @param {SignedCheckpoint} c @returns {Uint8Array} the signing bytes */
export function signingBytes(c) {
  const net = utf8(c.network);
  const nums = new Uint8Array(16);
  const v = new DataView(nums.buffer);
  v.setBigUint64(0, BigInt(c.treeSize));
  v.setBigUint64(8, BigInt(c.timeMs));
  return concat(utf8('didnode/checkpoint/v1'), Uint8Array.of(0, net.length), net, nums.slice(0, 8), c.logRoot, c.stateRoot, nums.slice(8));
}

/**
 * Verify the binary signature under `publicKey` (and, with `signerDid`, that the kid is of that DID).
 * @param {SignedCheckpoint} c @param {Uint8Array} publicKey @param {string|null} signerDid
 */
export async function verifyCheckpointSignature(c, publicKey, signerDid) {
  if (signerDid !== null && c.kid.split('#')[0] !== signerDid) throw new VerifyError('BAD_SIGNATURE', `checkpoint is signed by ${c.kid}, not by a key of ${signerDid}`);
  if (!(await ed25519Verify(publicKey, c.signature, signingBytes(c)))) {
    throw new VerifyError('BAD_SIGNATURE', `checkpoint at tree size ${c.treeSize} does not verify under the signer key of ${c.kid}`);
  }
}

/**
 * Whether the JSON checkpoint states what the verified note states.
 * @param {SignedCheckpoint} c @param {import('./note.js').Checkpoint} n
 */
export function checkMatchesNote(c, n) {
  if (c.network !== n.network || c.treeSize !== n.treeSize || c.timeMs !== n.timeMs || !equal(c.logRoot, n.logRoot) || !equal(c.stateRoot, n.stateRoot)) {
    throw new VerifyError('CLAIM_MISMATCH', `the checkpoint's fields (size ${c.treeSize}, state root ${toHex(c.stateRoot).slice(0, 16)}…) are not what its signed note states (size ${n.treeSize}, state root ${toHex(n.stateRoot).slice(0, 16)}…)`);
  }
}
