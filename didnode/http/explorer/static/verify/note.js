/**
 * C2SP signed notes and checkpoints (docs/transparency.md "Checkpoints as signed notes", docs/witness.md):
 * strict note parsing, key IDs, the checkpoint body with didnode's three extension lines,
 * cosignature/v1, and the check of a note against a trust policy (k of n checkpoint keys, k of n
 * witnesses). Mirrors didnode/core/note.py, tlog_checkpoint.py, cosignature.py, trust/witnessed.py.
 * @module verify/note
 */
import {
  VerifyError, concat, ed25519Verify, equal, fromBase64, fromUtf8, malformed, sha256, toHex, utf8,
} from './bytes.js';

export const ED25519 = 0x01;
export const COSIGNATURE_V1 = 0x04;
const MAX_NOTE_BYTES = 1 << 16;
const MAX_SIGNATURES = 100;
const MAX_SIGNATURE_BYTES = 4 + 4096;
const CONTROL = /[\x00-\x09\x0b-\x1f]/;
const BAD_NAME = /[\s+\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f]/;
const ORIGIN_BAD = /[\s+\x00-\x1f\x7f]/;
const DECIMAL = /^(?:0|[1-9][0-9]{0,19})$/;
export const NETWORK_RE = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** @typedef {{name: string, keyHash: Uint8Array, signature: Uint8Array}} NoteSignature */
/** @typedef {{text: Uint8Array, textString: string, signatures: NoteSignature[]}} Note */

/** @param {string} name @param {string} what */
function checkName(name, what) {
  if (!name) throw malformed(`${what}: key name is empty`);
  if (BAD_NAME.test(name)) throw malformed(`${what}: key name ${name.slice(0, 60)} contains a space, a plus or a control character`);
}

/**
 * Parse a signed note strictly.
 * @param {Uint8Array|string} data @returns {Note}
 */
export function parseNote(data) {
  const bytes = typeof data === 'string' ? utf8(data) : data;
  if (bytes.length > MAX_NOTE_BYTES) throw malformed(`note is ${bytes.length} bytes; at most ${MAX_NOTE_BYTES}`);
  const s = fromUtf8(bytes, 'note');
  if (CONTROL.test(s)) throw malformed('note contains a control character other than newline');
  if (!s.endsWith('\n')) throw malformed('note does not end in a newline');
  const split = s.lastIndexOf('\n\n');
  if (split < 0) throw malformed('note has no blank line before its signatures');
  const textString = s.slice(0, split + 1);
  const block = s.slice(split + 2);
  if (!block) throw malformed('note has no signature lines after its last blank line');
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) throw malformed(`note carries ${lines.length} signatures; at most ${MAX_SIGNATURES}`);
  return { text: utf8(textString), textString, signatures: lines.map(parseSignatureLine) };
}

/** @param {string} line @returns {NoteSignature} */
function parseSignatureLine(line) {
  if (!line.startsWith('\u2014 ')) throw malformed(`note signature line ${line.slice(0, 60)} does not start with an em dash and a space`);
  const rest = line.slice(2);
  const sp = rest.indexOf(' ');
  if (sp < 0) throw malformed('note signature line has no space between key name and signature');
  const name = rest.slice(0, sp);
  checkName(name, 'note signature');
  const raw = fromBase64(rest.slice(sp + 1), `note signature of ${name.slice(0, 60)}`);
  if (raw.length <= 4 || raw.length > MAX_SIGNATURE_BYTES) throw malformed(`note signature of ${name.slice(0, 60)} is ${raw.length} bytes`);
  return { name, keyHash: raw.slice(0, 4), signature: raw.slice(4) };
}

/**
 * The 4-byte key ID: SHA-256(name || "\n" || type || public key)[:4].
 * @param {string} name @param {number} type @param {Uint8Array} publicKey @returns {Promise<Uint8Array>}
 */
export async function keyHash(name, type, publicKey) {
  return (await sha256(concat(utf8(name), Uint8Array.of(0x0a, type), publicKey))).slice(0, 4);
}

/**
 * Parse a verifier key `name+hex(key ID)+base64(type || key)`; the key ID must match.
 * @param {string} vkey @returns {Promise<{name: string, type: number, publicKey: Uint8Array}>}
 */
export async function parseVerifierKey(vkey) {
  if (typeof vkey !== 'string') throw malformed('a verifier key is a string');
  const a = vkey.indexOf('+');
  const b = a < 0 ? -1 : vkey.indexOf('+', a + 1);
  if (a < 0 || b < 0) throw malformed(`verifier key ${vkey.slice(0, 80)} is not name+hash+key`);
  const name = vkey.slice(0, a);
  const kh = vkey.slice(a + 1, b);
  checkName(name, 'verifier key');
  if (!/^[0-9a-f]{8}$/.test(kh)) throw malformed(`verifier key ${name.slice(0, 60)} has a key ID that is not 8 lowercase hex digits`);
  const raw = fromBase64(vkey.slice(b + 1), `verifier key ${name.slice(0, 60)}`);
  if (raw.length < 2) throw malformed(`verifier key ${name.slice(0, 60)} has no key material`);
  const type = raw[0];
  const publicKey = raw.slice(1);
  if ((type === ED25519 || type === COSIGNATURE_V1) && publicKey.length !== 32) throw malformed(`verifier key ${name.slice(0, 60)}: an Ed25519 key is 32 bytes`);
  if (toHex(await keyHash(name, type, publicKey)) !== kh) throw malformed(`verifier key ${name.slice(0, 60)}: key ID ${kh} does not match the key`);
  return { name, type, publicKey };
}

/**
 * @typedef {object} Checkpoint
 * @property {string} origin
 * @property {string} network
 * @property {number} treeSize
 * @property {Uint8Array} logRoot
 * @property {Uint8Array} stateRoot
 * @property {number} timeMs
 */

/** @param {string} v @param {string} what @returns {number} */
function decimal(v, what) {
  if (!DECIMAL.test(v) || BigInt(v) >= 1n << 64n) throw malformed(`checkpoint ${what} ${v.slice(0, 30)} is not a decimal below 2^64 without leading zeroes`);
  return Number(v);
}

/** @param {string} v @param {string} what @returns {Uint8Array} */
function b64hash(v, what) {
  const raw = fromBase64(v, `checkpoint ${what}`);
  if (raw.length !== 32) throw malformed(`checkpoint ${what} must be canonical base64 of 32 bytes`);
  return raw;
}

/**
 * The didnode reading of a checkpoint note text (c2sp.org/tlog-checkpoint with exactly the
 * extension lines didnode-network, didnode-state-root, didnode-time-ms, in this order).
 * @param {string} text @returns {Checkpoint}
 */
export function parseCheckpointBody(text) {
  if (utf8(text).length > 8192) throw malformed('checkpoint body is larger than 8192 bytes');
  if (!text.endsWith('\n')) throw malformed('checkpoint body does not end in a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) throw malformed('checkpoint body has fewer than three lines');
  if (lines.some((l) => !l)) throw malformed('checkpoint body has an empty line');
  if (CONTROL.test(text)) throw malformed('checkpoint body contains a control character');
  const [origin, size, root, ...ext] = lines;
  if (!origin || utf8(origin).length > 255 || ORIGIN_BAD.test(origin)) throw malformed(`checkpoint origin ${origin.slice(0, 60)} is not a valid origin`);
  const treeSize = decimal(size, 'tree size');
  const logRoot = b64hash(root, 'root hash');
  if (ext.length !== 3) throw malformed(`a didnode checkpoint has exactly 3 extension lines, got ${ext.length}`);
  const values = ext.map((line, i) => {
    const key = ['didnode-network', 'didnode-state-root', 'didnode-time-ms'][i];
    const sp = line.indexOf(' ');
    if (sp < 0 || line.slice(0, sp) !== key) throw malformed(`checkpoint extension line ${line.slice(0, 60)} is not '${key} <value>'`);
    return line.slice(sp + 1);
  });
  if (!NETWORK_RE.test(values[0])) throw malformed(`checkpoint network ${values[0].slice(0, 40)} is not a network id`);
  return { origin, treeSize, logRoot, network: values[0], stateRoot: b64hash(values[1], 'state root'), timeMs: decimal(values[2], 'time') };
}

/**
 * Verify a cosignature/v1 of `text` by (name, publicKey); returns its timestamp (seconds).
 * @param {Uint8Array} text @param {NoteSignature} sig @param {Uint8Array} publicKey @param {string} name
 * @returns {Promise<number>}
 */
export async function verifyCosignature(text, sig, publicKey, name) {
  if (sig.signature.length !== 72) throw new VerifyError('BAD_COSIGNATURE', `cosignature of ${name} is ${sig.signature.length} bytes, want 72`);
  const ts = new DataView(sig.signature.buffer, sig.signature.byteOffset, 8).getBigUint64(0);
  if (ts > (1n << 63n) - 1n) throw new VerifyError('BAD_COSIGNATURE', `cosignature of ${name} has a timestamp above 2^63-1`);
  const msg = concat(utf8(`cosignature/v1\ntime ${ts}\n`), text);
  if (!(await ed25519Verify(publicKey, sig.signature.slice(8), msg))) {
    throw new VerifyError('BAD_COSIGNATURE', `cosignature of witness ${name} does not verify`);
  }
  return Number(ts);
}

/**
 * @typedef {object} NoteVerdict
 * @property {Checkpoint} checkpoint
 * @property {string[]} signers kids of the trusted checkpoint keys whose signatures verified
 * @property {{name: string, time: number}[]} cosigners trusted witnesses whose cosignatures verified
 * @property {number} threshold
 * @property {number} keys number of checkpoint keys in the policy
 * @property {number} witnessThreshold
 * @property {number} witnesses number of witnesses in the policy
 * @property {{name: string, trusted: boolean}[]} lines every signature line of the note, trusted or not
 */

/**
 * Verify a checkpoint note against a parsed trust policy (module docstring); throws a VerifyError naming
 * exactly what failed.
 * @param {import('./policy.js').TrustPolicy} policy
 * @param {string|Uint8Array} data the note text
 * @param {number|null} nowMs the clock for the cosignature skew bound, null for none
 * @returns {Promise<NoteVerdict>}
 */
export async function verifyNote(policy, data, nowMs) {
  const note = parseNote(data);
  const cp = parseCheckpointBody(note.textString);
  if (cp.origin !== policy.origin) throw new VerifyError('CLAIM_MISMATCH', `the checkpoint note is of origin ${cp.origin.slice(0, 80)}; the trust policy's log is ${policy.origin}`);
  if (cp.network !== policy.network) throw new VerifyError('CLAIM_MISMATCH', `the checkpoint is of network ${cp.network}; the trust policy is for ${policy.network}`);
  const logGood = new Map();
  const witnessGood = new Map();
  const lines = [];
  for (const sig of note.signatures) {
    if (sig.name === policy.origin) {
      let key = null;
      for (const k of policy.keys) {
        if (equal(sig.keyHash, await keyHash(policy.origin, ED25519, k.publicKey))) { key = k; break; }
      }
      lines.push({ name: sig.name, trusted: key !== null });
      if (!key) continue;
      if (!(await ed25519Verify(key.publicKey, sig.signature, note.text))) {
        throw new VerifyError('BAD_SIGNATURE', `the checkpoint note at size ${cp.treeSize} carries a signature of the trusted key ${key.kid} that does not verify`);
      }
      logGood.set(toHex(key.publicKey), key.kid);
      continue;
    }
    let witness = null;
    for (const w of policy.witnesses) {
      if (sig.name === w.name && equal(sig.keyHash, await keyHash(w.name, COSIGNATURE_V1, w.publicKey))) { witness = w; break; }
    }
    lines.push({ name: sig.name, trusted: witness !== null });
    if (!witness) continue;
    const ts = await verifyCosignature(note.text, sig, witness.publicKey, witness.name);
    if (nowMs !== null && ts > Math.floor(nowMs / 1000) + 300) {
      throw new VerifyError('TIME_SKEW', `cosignature of ${witness.name} is dated ${ts - Math.floor(nowMs / 1000)} s in the future (bound 300 s)`);
    }
    witnessGood.set(toHex(witness.publicKey), { name: witness.name, time: ts });
  }
  if (!logGood.size) throw new VerifyError('UNTRUSTED_SIGNER', `the checkpoint note at size ${cp.treeSize} carries no signature of a checkpoint key this trust policy lists under ${policy.origin}`);
  if (logGood.size < policy.threshold) {
    throw new VerifyError('BELOW_THRESHOLD', `the checkpoint note at size ${cp.treeSize} carries valid signatures of ${logGood.size} trusted checkpoint key(s); the trust policy needs ${policy.threshold}`);
  }
  if (witnessGood.size < policy.witnessThreshold) {
    throw new VerifyError('BELOW_THRESHOLD', `the checkpoint note at size ${cp.treeSize} carries valid cosignatures of ${witnessGood.size} trusted witness(es); the trust policy needs ${policy.witnessThreshold}`);
  }
  return {
    checkpoint: cp,
    signers: [...logGood.values()],
    cosigners: [...witnessGood.values()],
    threshold: policy.threshold,
    keys: policy.keys.length,
    witnessThreshold: policy.witnessThreshold,
    witnesses: policy.witnesses.length,
    lines,
  };
}
