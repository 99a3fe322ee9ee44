/**
 * RFC 6962 / RFC 9162 log proofs (docs/transparency.md §1): hashing with the 0x00/0x01 prefixes,
 * the proof encoding `u8 count || count × 32 bytes`, inclusion and consistency verification with
 * exact-length checks. Mirrors didnode/core/merkle/proof_verify.py; sizes are Numbers (exact below 2^53).
 * @module verify/merkle
 */
import { VerifyError, concat, equal, malformed, sha256, toHex } from './bytes.js';

const LEAF = Uint8Array.of(0);
const NODE = Uint8Array.of(1);

/** @param {Uint8Array} data @returns {Promise<Uint8Array>} SHA-256(0x00 || data) */
export const leafHash = (data) => sha256(concat(LEAF, data));

/** @param {Uint8Array} l @param {Uint8Array} r @returns {Promise<Uint8Array>} SHA-256(0x01 || l || r) */
export const nodeHash = (l, r) => sha256(concat(NODE, l, r));

/** SHA-256 of the empty string (the root of the empty tree). */
export const EMPTY_ROOT_HEX = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/**
 * Decode `u8 count || count × 32-byte hash` (exact length).
 * @param {Uint8Array} data @returns {Uint8Array[]}
 */
export function parseLogProof(data) {
  if (!data.length) throw malformed('log proof is empty (no count byte)');
  const count = data[0];
  const want = 1 + count * 32;
  if (data.length !== want) throw malformed(`log proof of ${count} hashes must be ${want} bytes, is ${data.length}`);
  const out = [];
  for (let i = 1; i < want; i += 32) out.push(data.slice(i, i + 32));
  return out;
}

/** @param {number} x @returns {number} bit length of a non-negative integer below 2^53 */
function bitLength(x) {
  let n = 0;
  while (x > 0) { x = Math.floor(x / 2); n++; }
  return n;
}

/** @param {number} x @returns {number} number of set bits */
function popcount(x) {
  let n = 0;
  while (x > 0) { n += x % 2; x = Math.floor(x / 2); }
  return n;
}

// Sizes may exceed 2^32, so bit operations go through BigInt.
/** @param {number} index @param {number} size @returns {number} */
function inclusionLength(index, size) {
  const inner = bitLength(Number(BigInt(index) ^ BigInt(size - 1)));
  return inner + popcount(Number(BigInt(index) >> BigInt(inner)));
}

/** @param {string} what @param {Uint8Array} h */
function checkHash(what, h) {
  if (h.length !== 32) throw malformed(`${what} is ${h.length} bytes, want 32`);
}

/**
 * The root that `proof` gives leaf `index` of a `size`-leaf tree (RFC 9162 2.1.3.2).
 * @param {Uint8Array} leaf the leaf hash @param {number} index @param {number} size @param {Uint8Array[]} proof
 * @returns {Promise<Uint8Array>}
 */
export async function rootFromInclusion(leaf, index, size, proof) {
  if (!(Number.isSafeInteger(index) && Number.isSafeInteger(size) && index >= 0 && index < size)) {
    throw malformed(`leaf index ${index} is not below tree size ${size}`);
  }
  checkHash('leaf hash', leaf);
  proof.forEach((p, i) => checkHash(`proof[${i}]`, p));
  const want = inclusionLength(index, size);
  if (proof.length !== want) throw malformed(`inclusion proof for leaf ${index} of ${size} has ${proof.length} hashes, want ${want}`);
  let fn = BigInt(index);
  let sn = BigInt(size - 1);
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw malformed('inclusion proof is too long');
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while (fn !== 0n && (fn & 1n) === 0n) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw malformed('inclusion proof is too short');
  return r;
}

/**
 * Check that `leaf` (a leaf hash) is leaf `index` of the `size`-leaf tree with `root`; throws on failure.
 * @param {Uint8Array} leaf @param {number} index @param {number} size @param {Uint8Array[]} proof @param {Uint8Array} root
 */
export async function verifyInclusion(leaf, index, size, proof, root) {
  checkHash('root', root);
  const got = await rootFromInclusion(leaf, index, size, proof);
  if (!equal(got, root)) {
    throw new VerifyError('ROOT_MISMATCH', `inclusion proof for leaf ${index} of ${size} leads to root ${toHex(got)}, not ${toHex(root)}`);
  }
}

/** @param {number} size1 @param {number} size2 @returns {number} */
function consistencyLength(size1, size2) {
  const s1 = BigInt(size1);
  let shift = 0n;
  while (((s1 >> shift) & 1n) === 0n) shift++;
  const len = inclusionLength(Number((s1 - 1n) >> shift), Number((BigInt(size2) - 1n) >> shift) + 1);
  return s1 === 1n << shift ? len : len + 1;
}

/**
 * Check that the `size1` tree with `root1` is a prefix of the `size2` tree with `root2` (RFC 9162 2.1.4.2,
 * with the trivial cases of docs/transparency.md); throws on failure.
 * @param {number} size1 @param {number} size2 @param {Uint8Array} root1 @param {Uint8Array} root2 @param {Uint8Array[]} proof
 */
export async function verifyConsistency(size1, size2, root1, root2, proof) {
  checkHash('root1', root1);
  checkHash('root2', root2);
  proof.forEach((p, i) => checkHash(`proof[${i}]`, p));
  if (!(Number.isSafeInteger(size1) && Number.isSafeInteger(size2) && size1 >= 0 && size1 <= size2)) {
    throw malformed(`consistency needs 0 <= size1 <= size2, got size1=${size1} size2=${size2}`);
  }
  if (size1 === size2 || size1 === 0) {
    if (proof.length) throw malformed(`consistency proof ${size1} -> ${size2} must be empty, has ${proof.length} hashes`);
    const expected = size1 === size2 ? toHex(root2) : EMPTY_ROOT_HEX;
    if (toHex(root1) !== expected) throw new VerifyError('ROOT_MISMATCH', `root1 ${toHex(root1)} is not the root of a ${size1}-leaf tree here`);
    return;
  }
  const want = consistencyLength(size1, size2);
  if (proof.length !== want) throw malformed(`consistency proof ${size1} -> ${size2} has ${proof.length} hashes, want ${want}`);
  const path = [...proof];
  const s1 = BigInt(size1);
  if ((s1 & (s1 - 1n)) === 0n) path.unshift(root1);
  let fn = s1 - 1n;
  let sn = BigInt(size2) - 1n;
  while ((fn & 1n) === 1n) { fn >>= 1n; sn >>= 1n; }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) throw malformed('consistency proof is too long');
    if ((fn & 1n) === 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if ((fn & 1n) === 0n) {
        while (fn !== 0n && (fn & 1n) === 0n) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw malformed('consistency proof is too short');
  if (!equal(fr, root1)) throw new VerifyError('ROOT_MISMATCH', `consistency proof ${size1} -> ${size2} does not lead to root1 ${toHex(root1)}`);
  if (!equal(sr, root2)) throw new VerifyError('ROOT_MISMATCH', `consistency proof ${size1} -> ${size2} does not lead to root2 ${toHex(root2)}`);
}
