/**
 * Log entries (docs/transparency.md §1; didnode/core/entry.py):
 * `u8 version (1) || u64 position || u64 time_ms || u32 len || payload || u8 n || n × (u16 len || kid || 64-byte sig)`.
 * @module verify/entry
 */
import { Reader, fromUtf8, malformed } from './bytes.js';

/**
 * @typedef {{position: number, time: number, payload: Uint8Array, payloadText: string, proofs: {kid: string, signature: Uint8Array}[]}} LogEntry
 */

/**
 * Decode a log entry strictly (exact length).
 * @param {Uint8Array} data @returns {LogEntry}
 */
export function decodeEntry(data) {
  const r = new Reader(data, 'log entry');
  const version = r.u8();
  if (version !== 1) throw malformed(`log entry has unknown version ${version}`);
  const position = r.u64();
  const time = r.u64();
  const payload = r.bytes(r.u32());
  const n = r.u8();
  const proofs = [];
  for (let i = 0; i < n; i++) {
    const kid = r.str(r.u16(), 'kid');
    proofs.push({ kid, signature: r.bytes(64) });
  }
  r.end();
  return { position, time, payload, payloadText: fromUtf8(payload, 'log entry payload'), proofs };
}
