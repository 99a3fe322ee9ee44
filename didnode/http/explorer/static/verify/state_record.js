/**
 * The binary state record of a DID (docs/storage.md "State records"; didnode/core/keystate/state.py):
 * a strict decoder that accepts exactly the records the node writes (canonical), so that
 * SHA-256(record) under a verified state root pins one state.
 * @module verify/state_record
 */
import { Reader, fromUtf8, malformed, toHex } from './bytes.js';
import { canonicalJson } from './canonical.js';

const STATUS = ['active', 'deactivated'];
const FATES = ['current', 'rotated', 'revoked'];
/** (type code, purpose bits) -> [type, purposes] */
const KINDS = new Map([
  ['0:1', ['Ed25519', ['assertionMethod']]],
  ['0:2', ['Ed25519', ['authentication']]],
  ['0:3', ['Ed25519', ['assertionMethod', 'authentication']]],
  ['1:4', ['X25519', ['keyAgreement']]],
]);

/**
 * @typedef {object} KeyRecord
 * @property {string} id
 * @property {string} type Ed25519 or X25519
 * @property {string} publicKeyMultibase
 * @property {string[]} purposes
 * @property {string} fate current, rotated or revoked
 * @property {number} addedSeq
 * @property {number} addedPos
 * @property {number} endedSeq -1 while current
 * @property {number} endedPos -1 while current
 * @property {string} reason
 */

/**
 * @typedef {object} DidState
 * @property {string} did
 * @property {number} seq
 * @property {string} last lowercase hex
 * @property {string} status active or deactivated
 * @property {string} next lowercase hex, empty after deactivation
 * @property {string[]} controllers
 * @property {{id: string, type: string, serviceEndpoint: string}[]} services
 * @property {KeyRecord[]} keys
 * @property {{pos: number, time: number}} created
 * @property {{pos: number, time: number}} updated
 * @property {{id: string, mediaType: string, hash: string, pos: number, seq: number}[]} resources
 */

/**
 * A non-empty canonical JSON list of objects with exactly `members` (name -> typeof).
 * @param {Uint8Array} raw @param {Record<string, string>} members @param {string} what
 * @returns {any[]}
 */
function jsonList(raw, members, what) {
  const text = fromUtf8(raw, `state record ${what}`);
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    throw malformed(`state record: ${what} are not JSON`);
  }
  if (canonicalJson(value) !== text) throw malformed(`state record: ${what} are not canonical JSON`);
  if (!Array.isArray(value) || !value.length) throw malformed(`state record: ${what} must be a non-empty JSON list`);
  const names = Object.keys(members).sort().join(',');
  for (const item of value) {
    const ok = item !== null && typeof item === 'object' && !Array.isArray(item)
      && Object.keys(item).sort().join(',') === names
      && Object.entries(members).every(([m, t]) => (t === 'int' ? Number.isInteger(item[m]) : typeof item[m] === t));
    if (!ok) throw malformed(`state record: an entry of ${what} has the wrong members`);
  }
  return value;
}

/**
 * Decode a state record strictly; throws MALFORMED on anything the node would not have written.
 * @param {Uint8Array} data @returns {DidState}
 */
export function decodeStateRecord(data) {
  const r = new Reader(data, 'state record');
  const version = r.u8();
  if (version !== 1) throw malformed(`state record has unknown version ${version}`);
  const dlen = r.u8();
  const seq = r.u32();
  const last = toHex(r.bytes(32));
  const status = r.u8();
  if (status > 1) throw malformed(`state record has unknown status ${status}`);
  const nlen = r.u8();
  if (nlen !== 0 && nlen !== 32) throw malformed(`state record: next has ${nlen} bytes, not 0 or 32`);
  const created = { pos: r.u64(), time: r.u64() };
  const updated = { pos: r.u64(), time: r.u64() };
  const nctrl = r.u8();
  const slen = r.u16();
  const nkeys = r.u16();
  const rlen = r.u16();
  const did = r.str(dlen, 'did');
  const next = toHex(r.bytes(nlen));
  const controllers = [];
  for (let i = 0; i < nctrl; i++) controllers.push(r.str(r.u8(), 'controller'));
  const services = slen ? jsonList(r.bytes(slen), { id: 'string', type: 'string', serviceEndpoint: 'string' }, 'services') : [];
  /** @type {KeyRecord[]} */
  const keys = [];
  for (let i = 0; i < nkeys; i++) {
    const il = r.u8();
    const ml = r.u8();
    const rl = r.u16();
    const kind = r.u8();
    const bits = r.u8();
    const fate = r.u8();
    const addedSeq = r.u32();
    const addedPos = r.u64();
    const endedSeq = r.i32();
    const endedPos = r.i64();
    const k = KINDS.get(`${kind}:${bits}`);
    if (!k) throw malformed(`state record: a key has type ${kind} with purposes ${bits}`);
    if (fate > 2 || endedSeq < -1 || endedPos < -1) throw malformed(`state record: a key has fate ${fate}, endedSeq ${endedSeq}, endedPos ${endedPos}`);
    keys.push({
      id: r.str(il, 'key id'),
      type: k[0],
      purposes: [...k[1]],
      publicKeyMultibase: r.str(ml, 'key'),
      reason: rl ? r.str(rl, 'reason') : '',
      fate: FATES[fate],
      addedSeq, addedPos, endedSeq, endedPos,
    });
  }
  const resources = rlen
    ? jsonList(r.bytes(rlen), { id: 'string', mediaType: 'string', hash: 'string', pos: 'int', seq: 'int' }, 'resources')
    : [];
  r.end();
  return { did, seq, last, status: STATUS[status], next, controllers, services, keys, created, updated, resources };
}
