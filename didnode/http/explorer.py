"""The explorer's JSON API under ``/api/v1/`` (issue #20; docs/http.md, "Explorer API").

Read-only, JSON only (the server never puts ledger data into HTML): what the
explorer's pages show, and the bytes they verify it from in the browser
(state records, sparse and log proofs in their documented serialisations,
the exact signed checkpoint notes). Every failure is an RFC 9457 problem
document (:func:`didnode.http.status.problem`); on the ``/api/v1/did/...``
routes a DID the resolver would refuse carries the resolver's status and its
DID error type (``didError``). Every answer carries the explorer's security
headers (:data:`didnode.http.explorer_static.SECURITY_HEADERS`). Every list is
bounded and paged by cursor.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any, Awaitable, Callable

from aiohttp import web

from didnode.core import canonical
from didnode.core import entry as entry_codec
from didnode.core import note as note_codec
from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.did_url import DID_ERROR_NS, check_did, error_type, percent_decode, parse_did_url
from didnode.core.document import resolution_result
from didnode.core.encoding import ED25519_PUB, multikey_encode
from didnode.core.keystate import DidState
from didnode.core.merkle.encoding import serialize_log_proof, serialize_sparse_proof
from didnode.core.merkle.hasher import leaf_hash
from didnode.core.tlog_checkpoint import default_origin
from didnode.core.trust.history import ProvenOperation, pick_version, replay
from didnode.core.trust.policy import TrustedKey, TrustPolicy, fingerprint
from didnode.errors import DidnodeError, InvalidArgument, NotFound, UnknownDid, UnknownOperation
from didnode.http.explorer_static import SECURITY_HEADERS
from didnode.http.resolver import COMMON_HEADERS, Resolver
from didnode.http.status import PROBLEM_JSON, problem, resolution_status
from didnode.ledger import controlled as index
from didnode.store import layout
from didnode.store.checkpoint_tables import CheckpointTables
from didnode.store.ledger_tables import LedgerTables

API = "/api/v1/"
DID_PREFIX = API + "did/"
JSON_TYPE = "application/json; charset=utf-8"
HEADERS = {**COMMON_HEADERS, **SECURITY_HEADERS}
MAX_HISTORY = 200
MAX_CONTROLLED = 500
MAX_STREAMS = 200
MAX_EVIDENCE = 50
MAX_CHECKPOINTS = 100
MAX_QUERY = 100
MAX_SEARCH = 2048
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
Handler = Callable[[web.Request], Awaitable[web.Response]]


def b64(data: bytes) -> str:
    """Standard base64 with padding (the API's binary encoding)."""
    return base64.b64encode(data).decode("ascii")


def reply(body: Any, status: int = 200) -> web.Response:
    """A JSON answer with the explorer's headers."""
    return web.Response(status=status, body=_dumps(body).encode(), headers={**HEADERS, "Content-Type": JSON_TYPE})


def failed(err: DidnodeError, did_route: bool, did_text: str | None = None) -> web.Response:
    """The problem document of ``err``; on DID routes with the resolver's status and ``didError``."""
    if did_route:
        kind = error_type(err, did_text)
        doc = problem(err, resolution_status(err, did_text))
        doc["didError"] = DID_ERROR_NS + kind
    else:
        doc = problem(err)
    return web.Response(status=doc["status"], body=_dumps(doc).encode(), headers={**HEADERS, "Content-Type": PROBLEM_JSON})


def query(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The request's query parameters: each known, at most once, at most 2,048 characters."""
    out: dict[str, str] = {}
    for name, value in request.rel_url.query.items():
        if name not in allowed:
            raise InvalidArgument(f"unknown query parameter {name[:40]!r}; this route takes {', '.join(allowed) or 'none'}", parameter=name[:40])
        if name in out:
            raise InvalidArgument(f"query parameter {name!r} is given twice", parameter=name)
        if len(value) > MAX_SEARCH:
            raise InvalidArgument(f"query parameter {name!r} is over {MAX_SEARCH} characters", parameter=name)
        out[name] = value
    return out


def number(params: dict[str, str], name: str, default: int | None, low: int = 0, high: int = 2**63 - 1) -> int | None:
    """A decimal parameter in ``[low, high]`` (no sign, no leading zeros), or ``default`` when absent."""
    raw = params.get(name)
    if raw is None:
        return default
    if not _DECIMAL.fullmatch(raw) or not low <= int(raw) <= high:
        raise InvalidArgument(f"{name} must be a decimal number from {low} to {high}, not {raw[:40]!r}", parameter=name)
    return int(raw)


def entry_time(tables: LedgerTables, txn: Any, position: int) -> int:
    """The ordering time of the log entry at ``position``."""
    return entry_codec.decode(tables.entry(txn, position)).time


def signers_of(signed: SignedCheckpoint) -> list[dict[str, str]]:
    """The signature lines of a checkpoint's signed note: key name and 4-byte key id (hex), in order."""
    if not signed.note:
        return []
    try:
        parsed = note_codec.parse(signed.note)
    except DidnodeError:
        return []
    return [{"name": s.name, "keyId": s.key_hash.hex()} for s in parsed.signatures]


def proven_under(signed: SignedCheckpoint) -> dict[str, Any]:
    """The checkpoint a proof is under: its JSON (``SignedCheckpoint.to_json``, parsed back by
    ``didnode.core.checkpoint.from_json``), its signed note's text and its note's signers."""
    return {
        "treeSize": signed.tree_size,
        "checkpoint": signed.to_json(),
        "note": signed.note.decode("utf-8") if signed.note else None,
        "signers": signers_of(signed),
    }


class ExplorerApi:
    """The ``/api/v1/`` handlers of one node, over the resolver's services."""

    def __init__(self, resolver: Resolver) -> None:
        if resolver.transparency is None:
            raise ValueError("the explorer API needs the node's transparency service")
        self.ledger = resolver.ledger
        self.transparency = resolver.transparency
        self.node = resolver.ledger.node
        self.tables = self.node.tables
        self.checkpoints = CheckpointTables(self.node.store)
        self.controlled_db = self.node.store.dbs[layout.DB_CONTROLLED]

    # -- the node ------------------------------------------------------------------

    def policy(self) -> TrustPolicy:
        """The node's trust policy, as ``didnode trust-policy`` prints it (cli.didnode_trust.node_policy)."""
        node = self.node
        with node.store.read() as txn:
            entry0 = self.tables.entry(txn, 0)
        key = TrustedKey(f"{node.node_did}#key-1", bytes(node.signing_key.verify_key))
        return TrustPolicy.create(node.network, leaf_hash(entry0), [key], 1, origin=node.origin or default_origin(node.network))

    async def trust_policy(self, request: web.Request) -> web.Response:
        query(request, ())
        return reply(self.policy().to_json())

    # -- a DID -----------------------------------------------------------------------

    def did_of(self, request: web.Request) -> tuple[str, str]:
        """(DID, sub-path) of a ``/api/v1/did/{did}[/sub]`` request; raises the resolver's errors."""
        raw = request.rel_url.raw_path[len(DID_PREFIX) :]
        did_part, _, sub = raw.partition("/")
        return check_did(percent_decode(did_part, "the DID")), sub

    async def did_route(self, request: web.Request) -> web.Response:
        """Dispatch ``/api/v1/did/{did}[/history|/controlled|/streams]``."""
        did_text = request.rel_url.raw_path[len(DID_PREFIX) :].partition("/")[0][:200]
        try:
            did, sub = self.did_of(request)
            if sub == "":
                return reply(await self.did_page(did, query(request, ("versionId",))))
            if sub == "history":
                return reply(self.history(did, query(request, ("after", "limit"))))
            if sub == "controlled":
                return reply(self.controlled(did, query(request, ("status", "q", "after", "limit"))))
            if sub == "streams":
                return reply(self.streams(did, query(request, ("after",))))
        except UnknownDid as err:
            return failed(err, True, did_text)
        except DidnodeError as err:
            return failed(err, err.reason in ("INVALID_DID", "INVALID_DID_URL", "METHOD_NOT_SUPPORTED", "UNKNOWN_VERSION"), did_text)
        return failed(NotFound(f"no resource at {request.path[:200]}: see docs/http.md, Explorer API", path=request.path[:200]), False)

    async def did_page(self, did: str, params: dict[str, str]) -> dict[str, Any]:
        version = number(params, "versionId", None)
        proven = await self.transparency.state_proof(did)
        proof = proven.proof
        if not proof.present:
            raise UnknownDid(f"{did} does not exist on this ledger", did=did)
        current = DidState.from_record(proof.state_record)
        tables = self.tables
        with self.node.store.read() as txn:
            versions = tables.versions(txn, did)
            created = versions[0].time
            state, nxt = current, None
            if version is not None:
                target = pick_version(did, [v.time for v in versions], version, None)
                if target + 1 < len(versions):
                    ops = []
                    for v in versions[: target + 1]:
                        e = entry_codec.decode(tables.entry(txn, v.position))
                        ops.append(ProvenOperation(e.position, e.time, v.seq, e.payload, e.proofs, ()))
                    state = replay(did, ops, self.node.network)[-1].state
                    nxt = (versions[target + 1].seq, versions[target + 1].time)
            times: dict[int, int] = {}

            def time_at(pos: int) -> int:
                if pos not in times:
                    times[pos] = entry_time(tables, txn, pos)
                return times[pos]

            keys = []
            for k in state.keys:
                item = k.to_json()
                item["addedTime"] = time_at(k.added_pos)
                if k.ended_pos >= 0:
                    item["endedTime"] = time_at(k.ended_pos)
                keys.append(item)
            resources = [{**r, "time": time_at(r["pos"])} for r in state.resources]
            counts = index.counts(txn, self.controlled_db, did)
        signed = proof.checkpoint
        return {
            "did": did,
            "resolution": resolution_result(state, created, nxt),
            "versionId": state.seq,
            "state": state.to_json(),
            "keys": keys,
            "controllers": list(state.controllers),
            "services": [dict(s) for s in state.services],
            "resources": resources,
            "controlled": counts,
            "verification": {
                "did": did,
                "present": True,
                "stateRecord": b64(proof.state_record),
                "stateProof": b64(serialize_sparse_proof(proof.proof)),
                **proven_under(signed),
            },
        }

    def history(self, did: str, params: dict[str, str]) -> dict[str, Any]:
        after = number(params, "after", None)
        limit = number(params, "limit", 50, 1, MAX_HISTORY)
        assert limit is not None
        page = self.ledger.history(did, after, limit)
        with self.node.store.read() as txn:
            total = len(self.tables.versions(txn, did))
        return {
            "did": did,
            "total": total,
            "entries": [
                {"position": e.position, "time": e.time_ms, "type": e.type, "seq": e.seq, "opHash": e.op_hash.hex(), "signers": list(e.signers)}
                for e in page.entries
            ],
            "next": page.next_after_seq,
        }

    def controlled(self, did: str, params: dict[str, str]) -> dict[str, Any]:
        status = params.get("status")
        if status is not None and status not in index.STATUS_NAMES:
            raise InvalidArgument(f"status is active or deactivated, not {status[:40]!r}", parameter="status")
        q = params.get("q")
        if q is not None and not 1 <= len(q) <= MAX_QUERY:
            raise InvalidArgument(f"q is 1 to {MAX_QUERY} characters", parameter="q")
        after = params.get("after")
        limit = number(params, "limit", 100, 1, MAX_CONTROLLED)
        assert limit is not None
        want = None if status is None else index.STATUS_NAMES.index(status)
        base = index.prefix(did)
        out: list[dict[str, str]] = []
        more = False
        with self.node.store.read() as txn:
            self.tables.state_record(txn, did)  # UnknownDid for a DID the ledger does not hold
            counts = index.counts(txn, self.controlled_db, did)
            start = base + (q or "").encode()
            if after is not None:
                start = max(start, base + after.encode() + b"\x00")
            stop = base + (q or "").encode()
            cur = txn.cursor(db=self.controlled_db)
            if cur.set_range(start):
                for key, value in cur:
                    if not key.startswith(stop):
                        break
                    if want is not None and value[0] != want:
                        continue
                    if len(out) == limit:
                        more = True
                        break
                    out.append({"did": bytes(key[len(base) :]).decode(), "status": index.STATUS_NAMES[value[0] & 1]})
        return {"did": did, "counts": counts, "dids": out, "next": out[-1]["did"] if more else None}

    def streams(self, did: str, params: dict[str, str]) -> dict[str, Any]:
        after = params.get("after")
        base = layout.stream_key(did, "")  # DID 0x00
        out: list[dict[str, Any]] = []
        more = False
        with self.node.store.read() as txn:
            self.tables.state_record(txn, did)  # UnknownDid for a DID the ledger does not hold
            cur = txn.cursor(db=self.tables.streams_db)
            start = base if after is None else base + after.encode() + b"\x00"
            if cur.set_range(start):
                for key, _value in cur:
                    if not key.startswith(base):
                        break
                    if len(out) == MAX_STREAMS:
                        more = True
                        break
                    name = bytes(key[len(base) :]).decode("utf-8", "replace")
                    st = self.tables.stream_state(txn, did, name)
                    if st is None:
                        continue
                    last_time = entry_time(self.tables, txn, st.last_position) if st.last_position >= 0 else None
                    out.append({
                        "stream": name, "nextSeq": st.next_seq, "heads": st.heads, "lastPosition": st.last_position if st.last_position >= 0 else None,
                        "lastTime": last_time,
                        "state": {"nextSeq": st.next_seq, "lastHash": st.last_hash.hex(), "heads": st.heads, "lastPosition": st.last_position},
                    })
            evidence = self.evidence(txn, did)
        return {"did": did, "streams": out, "next": out[-1]["stream"] if more else None, "evidence": evidence}

    def evidence(self, txn: Any, did: str) -> list[dict[str, Any]]:
        """The device's equivocations this node refused (at most MAX_EVIDENCE): each the refused signed head
        and where the head it conflicts with is anchored. Node-local, not in the log: the two signed heads
        are the proof, checkable by anyone (docs/data.md, "Equivocation evidence")."""
        base = layout.stream_key(did, "")
        out: list[dict[str, Any]] = []
        cur = txn.cursor(db=self.tables.evidence_db)
        if not cur.set_range(base):
            return out
        for key, value in cur:
            if not key.startswith(base) or len(out) == MAX_EVIDENCE:
                break
            name, _, rest = bytes(key[len(base) :]).partition(b"\x00")
            value = bytes(value)
            out.append({
                "stream": name.decode("utf-8", "replace"),
                "first": layout.read_u64(rest[:8]) if len(rest) >= 8 else None,
                "refusedHead": b64(value[:-8]),
                "refusedHeadHash": hashlib.sha256(value[:-8]).hexdigest(),
                "anchoredPosition": layout.read_u64(value[-8:]),
            })
        return out

    # -- the log -----------------------------------------------------------------------

    async def log(self, request: web.Request) -> web.Response:
        params = query(request, ("limit",))
        limit = number(params, "limit", 20, 1, MAX_CHECKPOINTS)
        assert limit is not None
        await self.transparency.checkpoint()  # signs one if the log grew: the list ends at the log's size
        key = bytes(self.node.signing_key.verify_key)
        series: list[dict[str, Any]] = []
        latest: list[SignedCheckpoint] = []
        with self.node.store.read() as txn:
            size = self.tables.log_size(txn)
            last_time = self.tables.last_time(txn)
            rows = list(self.checkpoints.all(txn))
        prev: tuple[int, int] | None = None
        for i, (tree_size, raw) in enumerate(rows):
            signed = _decoded(raw)
            t = signed.checkpoint.time_ms
            rate = None
            if prev is not None and t > prev[1]:
                rate = round((tree_size - prev[0]) * 1000 / (t - prev[1]), 3)
            series.append({"treeSize": tree_size, "timeMs": t, "opsPerSecond": rate})
            prev = (tree_size, t)
            if i >= len(rows) - limit:
                latest.append(signed)
        origin = self.node.origin
        checkpoints = []
        for signed in reversed(latest):
            item = {**signed.to_json(), "signers": signers_of(signed)}
            item["cosigners"] = [s["name"] for s in item["signers"] if s["name"] != origin]
            checkpoints.append(item)
        return reply({
            "size": size,
            "time": last_time,
            "trust": {
                "kid": f"{self.node.node_did}#key-1", "fingerprint": fingerprint(key), "publicKey": b64(key),
                "publicKeyMultibase": multikey_encode(key, ED25519_PUB), "origin": origin,
            },
            "checkpoints": checkpoints,
            "series": series,
        })

    async def log_entry(self, request: web.Request) -> web.Response:
        query(request, ())
        raw = request.match_info["position"]
        if not _DECIMAL.fullmatch(raw):
            raise InvalidArgument(f"a position is a decimal number without sign or leading zeros, not {raw[:40]!r}", parameter="position")
        position = int(raw)
        with self.node.store.read() as txn:
            n = self.tables.log_size(txn)
        if position >= n:
            raise UnknownOperation(f"no log entry at position {position}; the log holds {n}", position=position)
        proof = await self.transparency.inclusion_proof(position=position)
        e = entry_codec.decode(proof.entry)
        body = canonical.decode_strict(e.payload)
        op_hash = hashlib.sha256(e.payload).digest()
        did = body.get("did") or ("" if body.get("type") == "govern" else _create_did(op_hash))
        signed = proof.checkpoint
        assert signed is not None
        return reply({
            "position": e.position, "time": e.time, "type": body.get("type"), "did": did or None, "seq": body.get("seq"),
            "opHash": op_hash.hex(), "signers": [p.kid for p in e.proofs], "payload": e.payload.decode("utf-8"),
            "entry": b64(proof.entry),
            "inclusion": {
                "leafIndex": proof.index, "proof": b64(serialize_log_proof(proof.hashes)), **proven_under(signed),
            },
        })

    # -- search ---------------------------------------------------------------------------

    async def search(self, request: web.Request) -> web.Response:
        params = query(request, ("q",))
        q = params.get("q", "").strip()
        if not q:
            raise InvalidArgument("q is 1 to 2048 characters", parameter="q")
        return reply(self.classify(q))

    def classify(self, q: str) -> dict[str, Any]:
        """What ``q`` is (a DID, a DID URL, a position) and where the page goes."""
        out: dict[str, Any] = {"q": q}
        if _DECIMAL.fullmatch(q):
            with self.node.store.read() as txn:
                n = self.tables.log_size(txn)
            return {**out, "kind": "position", "position": int(q), "exists": int(q) < n, "path": f"/position/{q}"}
        if not q.startswith("did:"):
            return {**out, "kind": "unknown", "reason": "neither a DID, a DID URL nor a ledger position", "path": None}
        try:
            url = parse_did_url(q)
        except DidnodeError as err:
            return {**out, "kind": "unknown", "reason": err.message, "path": None}
        with self.node.store.read() as txn:
            exists = txn.get(layout.did_key(url.did), db=self.tables.state) is not None
        path = f"/did/{url.did}"
        if url.version_id is not None:
            path += f"?versionId={url.version_id}"
        if url.is_did and url.version_id is None and url.version_time is None:
            return {**out, "kind": "did", "did": url.did, "exists": exists, "path": path}
        res = {**out, "kind": "did-url", "did": url.did, "exists": exists, "path": path}
        if url.fragment is not None:
            res["fragment"] = url.fragment
        if "?" in q:
            res["query"] = q.partition("?")[2].partition("#")[0]
        return res


def _decoded(raw: bytes) -> SignedCheckpoint:
    from didnode.core import checkpoint as cp_codec

    return cp_codec.decode(raw)


def _create_did(op_hash: bytes) -> str:
    from didnode.core.did import did_for_create_hash

    return did_for_create_hash(op_hash)


def guarded(handler: Handler) -> Handler:
    """Failures of a non-DID route as problem documents with the explorer's headers."""

    async def run(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except DidnodeError as err:
            return failed(err, False)

    return run


def add_explorer_api(app: web.Application, resolver: Resolver) -> None:
    """Register the ``/api/v1/`` routes (GET, and HEAD) on ``app``."""
    api = ExplorerApi(resolver)
    app.router.add_get(API + "trust-policy", guarded(api.trust_policy))
    app.router.add_get(DID_PREFIX + "{tail:.*}", api.did_route)
    app.router.add_get(API + "log", guarded(api.log))
    app.router.add_get(API + "log/entry/{position}", guarded(api.log_entry))
    app.router.add_get(API + "search", guarded(api.search))


__all__ = ["API", "ExplorerApi", "add_explorer_api", "b64", "proven_under", "signers_of"]
