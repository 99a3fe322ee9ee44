/**
 * Byte helpers for the verifier: strict hex, base64, base64url and base58btc codecs, UTF-8,
 * SHA-256 (WebCrypto). Every decoder accepts only the canonical form and throws a
 * {@link VerifyError} of kind MALFORMED otherwise.
 * @module verify/bytes
 */

/** A verification failure: `kind` is a stable reason code, `message` says what failed in plain words. */
export class VerifyError extends Error {
  /**
   * @param {string} kind one of MALFORMED, ROOT_MISMATCH, BAD_SIGNATURE, BELOW_THRESHOLD, UNTRUSTED_SIGNER,
   *   CLAIM_MISMATCH, BAD_COSIGNATURE, TIME_SKEW, NO_CRYPTO
   * @param {string} message
   */
  constructor(kind, message) {
    super(message);
    this.name = 'VerifyError';
    this.kind = kind;
  }
}

/** @param {string} message @returns {VerifyError} */
export const malformed = (message) => new VerifyError('MALFORMED', message);

const HEX = /^(?:[0-9a-f]{2})*$/;

/**
 * Lowercase hex to bytes (uppercase and odd lengths are refused).
 * @param {string} s @param {string} [what]
 * @returns {Uint8Array}
 */
export function fromHex(s, what = 'hex') {
  if (typeof s !== 'string' || !HEX.test(s)) throw malformed(`${what} is not lowercase hex`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(i * 2, 2), 16);
  return out;
}

/** @param {Uint8Array} b @returns {string} lowercase hex */
export function toHex(b) {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** @param {Uint8Array} b @param {string} alphabet @param {boolean} pad @returns {string} */
function encode64(b, alphabet, pad) {
  let s = '';
  for (let i = 0; i < b.length; i += 3) {
    const n = (b[i] << 16) | ((b[i + 1] ?? 0) << 8) | (b[i + 2] ?? 0);
    const chars = [18, 12, 6, 0].map((sh) => alphabet[(n >> sh) & 63]);
    const keep = Math.min(4, Math.ceil(((b.length - i) * 4) / 3));
    s += chars.slice(0, keep).join('');
    if (pad) s += '='.repeat(4 - keep);
  }
  return s;
}

/** @param {Uint8Array} b @returns {string} standard padded base64 */
export const toBase64 = (b) => encode64(b, B64, true);

/** @param {Uint8Array} b @returns {string} unpadded base64url */
export const toBase64Url = (b) => encode64(b, B64URL, false);

/**
 * @param {string} s @param {string} alphabet @param {boolean} padded @param {string} what
 * @returns {Uint8Array}
 */
function decode64(s, alphabet, padded, what) {
  if (typeof s !== 'string') throw malformed(`${what} is not a string`);
  let body = s;
  if (padded) {
    if (s.length % 4 !== 0) throw malformed(`${what} is not padded base64`);
    body = s.replace(/={1,2}$/, '');
  }
  const bytes = [];
  let acc = 0;
  let bits = 0;
  for (const c of body) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw malformed(`${what} is not base64`);
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((acc >> bits) & 0xff);
    }
    acc &= (1 << bits) - 1;
  }
  const out = Uint8Array.from(bytes);
  // Canonical form only: re-encoding must give the same text (no stray bits, no wrong padding).
  if (encode64(out, alphabet, padded) !== s) throw malformed(`${what} is not canonical base64`);
  return out;
}

/** @param {string} s @param {string} [what] @returns {Uint8Array} */
export const fromBase64 = (s, what = 'base64') => decode64(s, B64, true, what);

/** @param {string} s @param {string} [what] @returns {Uint8Array} */
export const fromBase64Url = (s, what = 'base64url') => decode64(s, B64URL, false, what);

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

/**
 * Base58btc (Bitcoin alphabet) to bytes.
 * @param {string} s @param {string} [what]
 * @returns {Uint8Array}
 */
export function fromBase58(s, what = 'base58') {
  if (typeof s !== 'string' || !s) throw malformed(`${what} is empty`);
  let n = 0n;
  for (const c of s) {
    const v = B58.indexOf(c);
    if (v < 0) throw malformed(`${what} is not base58btc`);
    n = n * 58n + BigInt(v);
  }
  const digits = [];
  while (n > 0n) {
    digits.unshift(Number(n & 0xffn));
    n >>= 8n;
  }
  let zeros = 0;
  while (zeros < s.length && s[zeros] === '1') zeros++;
  return Uint8Array.from([...new Array(zeros).fill(0), ...digits]);
}

/**
 * The raw Ed25519 key of a Multikey `z6Mk...` (base58btc, multicodec 0xed 0x01).
 * @param {string} multibase @returns {Uint8Array} 32 bytes
 */
export function ed25519FromMultikey(multibase) {
  if (typeof multibase !== 'string' || !multibase.startsWith('z')) throw malformed(`key ${String(multibase).slice(0, 60)} is not base58btc multibase`);
  const raw = fromBase58(multibase.slice(1), 'multikey');
  if (raw.length !== 34 || raw[0] !== 0xed || raw[1] !== 0x01) throw malformed(`key ${multibase.slice(0, 60)} is not an Ed25519 Multikey`);
  return raw.slice(2);
}

const ENC = new TextEncoder();

/** @param {string} s @returns {Uint8Array} UTF-8 */
export const utf8 = (s) => ENC.encode(s);

/**
 * Strict UTF-8 decoding.
 * @param {Uint8Array} b @param {string} [what]
 * @returns {string}
 */
export function fromUtf8(b, what = 'text') {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(b);
  } catch {
    throw malformed(`${what} is not UTF-8`);
  }
}

/** @param {...Uint8Array} parts @returns {Uint8Array} */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** @param {Uint8Array} a @param {Uint8Array} b @returns {boolean} */
export function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/** @returns {SubtleCrypto} WebCrypto, or a NO_CRYPTO error outside a secure context */
export function subtle() {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new VerifyError('NO_CRYPTO', 'WebCrypto is not available: open the explorer over https or on localhost');
  return s;
}

/** @param {Uint8Array} data @returns {Promise<Uint8Array>} SHA-256 */
export async function sha256(data) {
  return new Uint8Array(await subtle().digest('SHA-256', data));
}

/**
 * Ed25519 verification with WebCrypto.
 * @param {Uint8Array} publicKey 32 bytes @param {Uint8Array} signature 64 bytes @param {Uint8Array} message
 * @returns {Promise<boolean>}
 */
export async function ed25519Verify(publicKey, signature, message) {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const s = subtle();
  let key;
  try {
    key = await s.importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify']);
  } catch {
    return false;
  }
  try {
    return await s.verify({ name: 'Ed25519' }, key, signature, message);
  } catch {
    return false;
  }
}

/** @param {bigint} x @param {string} what @returns {number} */
function safe(x, what) {
  if (x > BigInt(Number.MAX_SAFE_INTEGER) || x < -BigInt(Number.MAX_SAFE_INTEGER)) {
    throw malformed(`${what} holds a 64-bit number beyond 2^53 - 1, which this verifier does not handle (positions and times never reach it)`);
  }
  return Number(x);
}

/** A big-endian reader over bytes that throws MALFORMED on truncation. */
export class Reader {
  /** @param {Uint8Array} bytes @param {string} what */
  constructor(bytes, what) {
    this.b = bytes;
    this.o = 0;
    this.what = what;
    this.v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  /** @param {number} n */
  need(n) {
    if (this.o + n > this.b.length) throw malformed(`${this.what} is truncated`);
  }
  /** @returns {number} */
  u8() { this.need(1); return this.b[this.o++]; }
  /** @returns {number} */
  u16() { this.need(2); const x = this.v.getUint16(this.o); this.o += 2; return x; }
  /** @returns {number} */
  u32() { this.need(4); const x = this.v.getUint32(this.o); this.o += 4; return x; }
  /** @returns {number} */
  i32() { this.need(4); const x = this.v.getInt32(this.o); this.o += 4; return x; }
  /** @returns {number} a u64 as a Number; MALFORMED above 2^53 - 1 (ledger positions and times never get there) */
  u64() { this.need(8); const x = this.v.getBigUint64(this.o); this.o += 8; return safe(x, this.what); }
  /** @returns {number} an i64 as a Number; MALFORMED beyond ±(2^53 - 1) */
  i64() { this.need(8); const x = this.v.getBigInt64(this.o); this.o += 8; return safe(x, this.what); }
  /** @param {number} n @returns {Uint8Array} */
  bytes(n) { this.need(n); const x = this.b.subarray(this.o, this.o + n); this.o += n; return x; }
  /** @param {number} n @param {string} what @returns {string} */
  str(n, what) { return fromUtf8(this.bytes(n), `${this.what}: ${what}`); }
  /** Throws unless every byte was read. */
  end() {
    if (this.o !== this.b.length) throw malformed(`${this.what} has ${this.b.length - this.o} trailing bytes`);
  }
}
