"""Offline verification of proofs: bundles (files written by ``didctl log prove``) and proven resolutions.

Part of the client library; needs no node. The trust anchor is the
checkpoint signer's public key: given directly (raw bytes, or a Multikey
string), or taken from a DID document of the node's DID that the caller
obtained and trusts (a plain DID document, or a resolution result holding
one). The bundle is then checked by the pure verifier
(:func:`didnode.core.transparency_verify.verify_bundle`).
"""

from __future__ import annotations

from typing import Any

from didnode.clock import wall_ms

from didnode.core import proof_bundle
from didnode.core.encoding import ED25519_PUB, multikey_decode, raw_from_jwk
from didnode.core.proof_bundle import Bundle, ConsistencyProof, InclusionProof, StateProof
from didnode.core.results import ProvenResolution
from didnode.core.transparency_verify import Verified, check_fresh, verify_bundle
from didnode.core.document import resolution_result
from didnode.core.keystate import DidState
from didnode.errors import BadCheckpointSignature, InvalidArgument, InvalidKey, MalformedProof, ProofClaimMismatch


def load_bundle(data: str | bytes | dict[str, Any]) -> Bundle:
    """A bundle from its JSON text or decoded object; raises :class:`MalformedProof`."""
    if isinstance(data, dict):
        return proof_bundle.from_json(data)
    if not isinstance(data, (str, bytes, bytearray)):
        raise MalformedProof(f"a proof bundle is JSON text or a decoded object, not {type(data).__name__}")
    return proof_bundle.from_text(data)


def signer_key_from_did_document(document: dict[str, Any], kid: str) -> bytes:
    """The raw Ed25519 key that ``document`` lists under the DID URL ``kid``.

    ``document`` is a DID document or a DID Resolution result (``didDocument``
    member). Its ``id`` must be the DID of ``kid``. Raises
    :class:`BadCheckpointSignature` if it is of another DID or lists no such
    key (e.g. the key was rotated out since), :class:`InvalidKey` if the key
    does not decode.
    """
    doc = document.get("didDocument", document) if isinstance(document, dict) else None
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
        raise InvalidArgument("not a DID document (no string id) nor a resolution result holding one")
    did, _, fragment = kid.partition("#")
    if doc["id"] != did:
        raise BadCheckpointSignature(f"checkpoint is signed by {kid}, but the DID document is of {doc['id']}", kid=kid)
    for method in doc.get("verificationMethod") or ():
        if not isinstance(method, dict) or method.get("id") not in (kid, f"#{fragment}"):
            continue
        if "publicKeyMultibase" in method:
            return multikey_decode(method["publicKeyMultibase"], ED25519_PUB)
        if "publicKeyJwk" in method:
            jwk = method["publicKeyJwk"]
            if not isinstance(jwk, dict) or jwk.get("crv") != "Ed25519":
                raise InvalidKey(f"{kid} is not an Ed25519 key")
            return raw_from_jwk(jwk)
    raise BadCheckpointSignature(f"the DID document of {did} lists no key {kid} (rotated out, or never its key)", kid=kid)


def bundle_kid(bundle: Bundle) -> str:
    """The one signer key id of the bundle's checkpoints; raises if they differ or there are none."""
    if isinstance(bundle, ConsistencyProof):
        checkpoints = [c for c in (bundle.checkpoint1, bundle.checkpoint2) if c is not None]
    elif isinstance(bundle, (InclusionProof, StateProof)):
        checkpoints = [bundle.checkpoint] if bundle.checkpoint is not None else []
    else:
        raise MalformedProof(f"not a proof bundle: {type(bundle).__name__}")
    kids = {c.kid for c in checkpoints}
    if not kids:
        raise MalformedProof("the bundle carries no checkpoint")
    if len(kids) != 1:
        raise BadCheckpointSignature(f"the bundle's checkpoints are signed by different keys: {sorted(kids)}")
    return kids.pop()


def signer_key_from_multibase(text: str) -> bytes:
    """A raw Ed25519 key from its Multikey form (``z6Mk...``); raises :class:`InvalidKey`."""
    return multikey_decode(text.strip(), ED25519_PUB)


def verify_offline(
    bundle: Bundle,
    public_key: bytes | None = None,
    did_document: dict[str, Any] | None = None,
    max_age_ms: int | None = None,
    now_ms: int | None = None,
) -> Verified:
    """Verify ``bundle`` with exactly one trust anchor: ``public_key`` (raw
    32 bytes) or the signer's ``did_document``.

    With ``max_age_ms`` the (newest) checkpoint must also be at most that old
    at ``now_ms`` (default: the wall clock). Raises :class:`InvalidProof`
    subclasses; :class:`InvalidArgument` when not exactly one anchor is given.
    """
    if (public_key is None) == (did_document is None):
        raise InvalidArgument("give exactly one of the signer's public key or its DID document")
    signer_did = None
    if did_document is not None:
        kid = bundle_kid(bundle)
        public_key = signer_key_from_did_document(did_document, kid)
        signer_did = kid.partition("#")[0]
    assert public_key is not None
    verified = verify_bundle(bundle, public_key, signer_did)
    if max_age_ms is not None:
        check_fresh(verified.checkpoint, wall_ms() if now_ms is None else now_ms, max_age_ms)
    return verified


def verify_resolution(
    proven: ProvenResolution, public_key: bytes, signer_did: str | None = None, max_age_ms: int | None = None, now_ms: int | None = None
) -> dict[str, Any]:
    """Check a :class:`ProvenResolution` offline and return the resolution result
    recomputed from the proven state record (never the node's own rendering).

    Raises :class:`~didnode.errors.InvalidProof` subclasses: a bad checkpoint
    or state proof, a stale checkpoint (with ``max_age_ms``), or a node result
    that differs from the one the proven record gives
    (:class:`~didnode.errors.ProofClaimMismatch`).
    """
    verified = verify_bundle(proven.proof, public_key, signer_did)
    if max_age_ms is not None:
        check_fresh(verified.checkpoint, wall_ms() if now_ms is None else now_ms, max_age_ms)
    if not proven.proof.present:
        raise ProofClaimMismatch(f"the node proved that {proven.proof.did} does not exist, yet sent a document")
    state = DidState.from_record(proven.proof.state_record)
    result = resolution_result(state, state.created_time)
    if result != proven.result:
        raise ProofClaimMismatch(f"the node's resolution of {proven.proof.did} differs from its proven state record")
    return result
