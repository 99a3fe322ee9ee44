/**
 * Trust policies (docs/trust.md; didnode/core/trust/policy.py), the JSON form `didnode/trust/v1`:
 * network, genesis, checkpoint keys (Ed25519 Multikeys) with a threshold k of n, the log's origin
 * and optional witnesses (cosignature/v1 verifier keys) with their own threshold.
 * @module verify/policy
 */
import { ed25519FromMultikey, fromHex, malformed, toHex } from './bytes.js';
import { COSIGNATURE_V1, NETWORK_RE, parseVerifierKey } from './note.js';

/**
 * @typedef {object} TrustPolicy
 * @property {string} network
 * @property {string} genesis lowercase hex
 * @property {{kid: string, publicKey: Uint8Array}[]} keys
 * @property {number} threshold
 * @property {number} maxStalenessMs
 * @property {string} origin the checkpoint origin (default didnode.local/<network>)
 * @property {{name: string, publicKey: Uint8Array}[]} witnesses
 * @property {number} witnessThreshold
 */

const MEMBERS = ['type', 'network', 'genesis', 'checkpointKeys', 'threshold', 'maxStalenessMs', 'latestCheckpoint'];
const OPTIONAL = ['origin', 'witnesses', 'witnessThreshold'];

/**
 * Parse and check a trust policy JSON object strictly (unknown members are refused, so a witness
 * requirement is never dropped).
 * @param {any} d @returns {Promise<TrustPolicy>}
 */
export async function parsePolicy(d) {
  if (d === null || typeof d !== 'object' || Array.isArray(d)) throw malformed('trust policy: not a JSON object');
  const names = Object.keys(d);
  const missing = MEMBERS.filter((m) => !names.includes(m));
  const extra = names.filter((m) => !MEMBERS.includes(m) && !OPTIONAL.includes(m));
  if (missing.length || extra.length) throw malformed(`trust policy: members missing [${missing}], unknown [${extra}]`);
  if (('witnesses' in d) !== ('witnessThreshold' in d)) throw malformed('trust policy: witnesses and witnessThreshold come together');
  if (d.type !== 'didnode/trust/v1') throw malformed(`trust policy: type ${String(d.type).slice(0, 40)} is not didnode/trust/v1`);
  if (typeof d.network !== 'string' || !NETWORK_RE.test(d.network)) throw malformed('trust policy: network is not a network id');
  if (typeof d.genesis !== 'string' || d.genesis.length !== 64) throw malformed('trust policy: genesis must be 64 lowercase hex digits');
  fromHex(d.genesis, 'trust policy genesis');
  if (!Array.isArray(d.checkpointKeys) || !d.checkpointKeys.length || d.checkpointKeys.length > 64) throw malformed('trust policy: checkpointKeys must list 1..64 keys');
  const keys = d.checkpointKeys.map((/** @type {any} */ k) => {
    if (k === null || typeof k !== 'object' || Object.keys(k).sort().join(',') !== 'kid,publicKeyMultibase') throw malformed('trust policy: a checkpoint key must be {kid, publicKeyMultibase}');
    if (typeof k.kid !== 'string' || !k.kid.startsWith('did:') || !k.kid.includes('#')) throw malformed(`trust policy: checkpoint key id ${String(k.kid).slice(0, 80)} is not a DID URL`);
    return { kid: k.kid, publicKey: ed25519FromMultikey(k.publicKeyMultibase) };
  });
  if (new Set(keys.map((k) => k.kid)).size !== keys.length || new Set(keys.map((k) => toHex(k.publicKey))).size !== keys.length) {
    throw malformed('trust policy: checkpointKeys lists a kid or a key twice');
  }
  if (!Number.isInteger(d.threshold) || d.threshold < 1 || d.threshold > keys.length) throw malformed(`trust policy: threshold must be 1..${keys.length}`);
  if (!Number.isInteger(d.maxStalenessMs) || d.maxStalenessMs < 1000) throw malformed('trust policy: maxStalenessMs must be at least 1000');
  const origin = d.origin === undefined ? `didnode.local/${d.network}` : d.origin;
  if (typeof origin !== 'string' || !origin || /[\s+\x00-\x1f\x7f]/.test(origin)) throw malformed('trust policy: origin is not a valid origin');
  const witnesses = [];
  for (const v of d.witnesses ?? []) {
    const w = await parseVerifierKey(v);
    if (w.type !== COSIGNATURE_V1) throw malformed(`trust policy: witness ${w.name} has signature type ${w.type}; cosignature/v1 (4) is required`);
    witnesses.push({ name: w.name, publicKey: w.publicKey });
  }
  if (new Set(witnesses.map((w) => w.name)).size !== witnesses.length || new Set(witnesses.map((w) => toHex(w.publicKey))).size !== witnesses.length) {
    throw malformed('trust policy: witnesses lists a key or a name twice');
  }
  const wt = d.witnessThreshold ?? 0;
  if (!Number.isInteger(wt) || (witnesses.length ? wt < 1 || wt > witnesses.length : wt !== 0)) throw malformed(`trust policy: witnessThreshold must be 1..${witnesses.length}`);
  return { network: d.network, genesis: d.genesis, keys, threshold: d.threshold, maxStalenessMs: d.maxStalenessMs, origin, witnesses, witnessThreshold: wt };
}
