/**
 * Sparse state-tree proofs (docs/transparency.md §2): the encoding
 * `32-byte bitmap || n × 32-byte sibling || [other key || other value]` and presence/absence
 * verification. Mirrors didnode/core/merkle/sparse_verify.py.
 * @module verify/sparse
 */
import { VerifyError, concat, equal, malformed, sha256, toHex } from './bytes.js';

const EMPTY = new Uint8Array(32);

/**
 * @typedef {{bitmap: Uint8Array, siblings: Uint8Array[], other: null | [Uint8Array, Uint8Array]}} SparseProof
 */

/**
 * Decode a sparse proof (exact length).
 * @param {Uint8Array} data @returns {SparseProof}
 */
export function parseSparseProof(data) {
  if (data.length < 32) throw malformed(`sparse proof is ${data.length} bytes, shorter than its bitmap`);
  const bitmap = data.slice(0, 32);
  let n = 0;
  for (const b of bitmap) for (let m = b; m; m &= m - 1) n++;
  const end = 32 + n * 32;
  const rest = data.length - end;
  if (rest !== 0 && rest !== 64) throw malformed(`sparse proof with ${n} siblings must be ${end} or ${end + 64} bytes, is ${data.length}`);
  const siblings = [];
  for (let i = 32; i < end; i += 32) siblings.push(data.slice(i, i + 32));
  const other = rest ? [data.slice(end, end + 32), data.slice(end + 32)] : null;
  return { bitmap, siblings, other };
}

/** @param {Uint8Array} b @param {number} i @returns {number} bit i, most significant first */
const bit = (b, i) => (b[i >> 3] >> (7 - (i & 7))) & 1;

/**
 * The root that `proof` gives to `key` (presence of `value`, or absence when `value` is null).
 * @param {Uint8Array} key @param {Uint8Array|null} value @param {SparseProof} proof
 * @returns {Promise<Uint8Array>}
 */
export async function rootFromSparseProof(key, value, proof) {
  if (key.length !== 32) throw malformed(`key is ${key.length} bytes, want 32`);
  if (proof.bitmap.length !== 32) throw malformed(`bitmap is ${proof.bitmap.length} bytes, want 32`);
  let depth = 0;
  let count = 0;
  for (let i = 0; i < 256; i++) if (bit(proof.bitmap, i)) { depth = i + 1; count++; }
  if (proof.siblings.length !== count) throw malformed(`bitmap names ${count} siblings, proof has ${proof.siblings.length}`);
  proof.siblings.forEach((s, i) => {
    if (s.length !== 32) throw malformed(`sibling ${i} is ${s.length} bytes, want 32`);
    if (equal(s, EMPTY)) throw malformed(`sibling ${i} is the empty hash; it must be left out of the bitmap`);
  });
  let h;
  if (value !== null) {
    if (value.length !== 32) throw malformed(`value is ${value.length} bytes, want 32`);
    if (proof.other !== null) throw malformed("a presence proof cannot end at another key's leaf");
    h = await sha256(concat(Uint8Array.of(0), key, value));
  } else if (proof.other === null) {
    h = EMPTY;
  } else {
    const [ok, ov] = proof.other;
    if (ok.length !== 32 || ov.length !== 32) throw malformed('other leaf needs a 32-byte key and value');
    if (equal(ok, key)) throw malformed("an absence proof ends at the key's own leaf");
    for (let i = 0; i < depth; i++) {
      if (bit(ok, i) !== bit(key, i)) throw malformed(`other key ${toHex(ok)} is not on the key's path at depth ${depth}`);
    }
    h = await sha256(concat(Uint8Array.of(0), ok, ov));
  }
  let si = proof.siblings.length;
  for (let i = depth - 1; i >= 0; i--) {
    const s = bit(proof.bitmap, i) ? proof.siblings[--si] : EMPTY;
    h = await sha256(bit(key, i) ? concat(Uint8Array.of(1), s, h) : concat(Uint8Array.of(1), h, s));
  }
  return h;
}

/**
 * Check that the map with `root` maps `key` to `value`; throws on failure.
 * @param {Uint8Array} root @param {Uint8Array} key @param {Uint8Array} value @param {SparseProof} proof
 */
export async function verifyPresent(root, key, value, proof) {
  if (root.length !== 32) throw malformed(`root is ${root.length} bytes, want 32`);
  const got = await rootFromSparseProof(key, value, proof);
  if (!equal(got, root)) throw new VerifyError('ROOT_MISMATCH', `presence proof for key ${toHex(key)} does not lead to the state root ${toHex(root)}`);
}

/**
 * Check that the map with `root` holds nothing for `key`; throws on failure.
 * @param {Uint8Array} root @param {Uint8Array} key @param {SparseProof} proof
 */
export async function verifyAbsent(root, key, proof) {
  if (root.length !== 32) throw malformed(`root is ${root.length} bytes, want 32`);
  const got = await rootFromSparseProof(key, null, proof);
  if (!equal(got, root)) throw new VerifyError('ROOT_MISMATCH', `absence proof for key ${toHex(key)} does not lead to the state root ${toHex(root)}`);
}
