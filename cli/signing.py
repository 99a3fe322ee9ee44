"""How ``didctl`` finds a DID's secrets, its signer and its current state.

The one module every command module (``did``, ``vc``, ``auth``/``device``,
``provision``) imports these helpers from; command modules never import each
other. Three layers:

* state: :func:`current_state` (any status), :func:`active_state` (refuses a
  deactivated DID), :func:`network_of` (the network every operation names);
* secrets: :func:`secrets_of` (required) and :func:`held_secrets` (optional),
  both *settled*: an entry a crash left staged is finished first
  (:func:`cli.didctl_secrets.settle`);
* signers from a state and its secrets: :func:`auth_signer`,
  :func:`next_signer`, :func:`assertion_signer`; and the composed
  :func:`auth_signer_of` and :func:`issuer_for`.

Fresh keys and crash-safe staging stay in :mod:`cli.didctl_secrets`.
"""

from __future__ import annotations

from nacl.signing import SigningKey

from cli.didctl_common import Ctl, note
from cli.didctl_secrets import settle
from didnode.core.credentials import Issuer
from didnode.core.keystate import DidState
from didnode.core.operations import next_commitment
from didnode.errors import DidDeactivated, KeyNotInKeystore, UnknownKey
from didnode.keystore import DidSecrets

Signer = tuple[str, SigningKey]


# --------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------


def current_state(ctl: Ctl, did: str) -> DidState:
    """The current state of ``did`` on the node, whatever its status (and the node's network, remembered),
    verified against the node's trust policy (:meth:`Ctl.verified`): every operation is signed on top of it."""
    ks = ctl.verified().key_state(did)
    ctl.network = ks.network
    return ks.state


def active_state(ctl: Ctl, did: str, role: str = "") -> DidState:
    """The current state of ``did``; :class:`DidDeactivated` if no operation can follow."""
    state = current_state(ctl, did)
    if not state.active:
        who = f"{role} {did}" if role else did
        raise DidDeactivated(f"{who} is deactivated; it can neither change nor sign", did=did)
    return state


def network_of(ctl: Ctl) -> str:
    """The network the node serves (every operation names it): from the last key state read, else asked."""
    if ctl.network is None:
        ctl.network = ctl.client().node_info().network
    return ctl.network


# --------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------


def secrets_of(ctl: Ctl, did: str, role: str) -> DidSecrets:
    """The keystore entry of ``did``, settled; :class:`KeyNotInKeystore` names ``role`` if absent."""
    ks = ctl.keystore()
    if not ks.has(did):
        raise KeyNotInKeystore(f"cannot sign as {role} {did}: keystore {ks.path} holds no secrets for it", did=did)
    return settle(ks, ctl.client(), ks.get(did), note)


def held_secrets(ctl: Ctl, did: str) -> DidSecrets | None:
    """The settled keystore entry of ``did``, or None when the keystore has none (not an error here)."""
    ks = ctl.keystore()
    if not ks.has(did):
        return None
    return settle(ks, ctl.client(), ks.get(did), note)


# --------------------------------------------------------------------------
# Signers
# --------------------------------------------------------------------------


def auth_signer(state: DidState, secrets: DidSecrets) -> Signer:
    """(kid, key) of the newest current authentication key of ``state`` held in ``secrets``.

    Raises :class:`UnknownKey` when the DID has no current authentication key
    at all, :class:`KeyNotInKeystore` (naming the keys the ledger and the
    keystore have) when this keystore holds none of them.
    """
    if not state.current_keys("authentication"):
        raise UnknownKey(
            f"{state.did} has no current authentication key (all rotated out or revoked); "
            "a controller can restore one with `didctl did recover`",
            did=state.did,
        )
    held = []
    for key in state.current_keys("authentication"):
        seed = secrets.signing_keys.get(key.id)
        if seed is not None and bytes(SigningKey(seed).verify_key) == key.raw:
            held.append(key)
    if not held:
        current = ", ".join(k.id for k in state.current_keys("authentication")) or "none"
        raise KeyNotInKeystore(
            f"the keystore holds no current authentication key of {state.did} "
            f"(current on the ledger: {current}; in the keystore: {', '.join(sorted(secrets.signing_keys)) or 'none'})",
            did=state.did,
        )
    key = max(held, key=lambda k: k.added_pos)
    return f"{state.did}#{key.id}", secrets.signing_key(key.id)


def next_signer(state: DidState, secrets: DidSecrets) -> SigningKey:
    """The committed next key of ``state`` from ``secrets``; :class:`KeyNotInKeystore` if absent or not the committed one."""
    key = secrets.next_signing_key()
    if next_commitment(bytes(key.verify_key)) != state.next:
        raise KeyNotInKeystore(
            f"the next key in the keystore for {state.did} is not the one its ledger state commits to "
            "(was it rotated or recovered from another keystore?)",
            did=state.did,
        )
    return key


def assertion_signer(state: DidState, secrets: DidSecrets) -> tuple[str, SigningKey]:
    """(key id, key): the newest current assertionMethod key of ``state`` held in ``secrets``.

    Raises :class:`UnknownKey` when the DID has no current assertionMethod key,
    :class:`KeyNotInKeystore` when the keystore holds none of them.
    """
    current = state.current_keys("assertionMethod")
    if not current:
        raise UnknownKey(f"{state.did} has no current assertionMethod key; it cannot issue credentials", did=state.did)
    held = [k for k in current if (seed := secrets.signing_keys.get(k.id)) is not None and bytes(SigningKey(seed).verify_key) == k.raw]
    if not held:
        raise KeyNotInKeystore(
            f"the keystore holds no current assertionMethod key of {state.did} (current on the ledger: {', '.join(k.id for k in current)})",
            did=state.did,
        )
    key = max(held, key=lambda k: k.added_pos)
    return key.id, secrets.signing_key(key.id)


def auth_signer_of(ctl: Ctl, did: str, role: str) -> Signer:
    """(kid, key): ``did``'s current authentication key from the keystore."""
    secrets = secrets_of(ctl, did, role)
    return auth_signer(active_state(ctl, did, role), secrets)


def issuer_for(ctl: Ctl, did: str) -> tuple[Issuer, SigningKey]:
    """The local :class:`Issuer` of ``did`` (its assertionMethod key from the keystore) and the raw signing key."""
    secrets = secrets_of(ctl, did, "issuer")
    state = active_state(ctl, did, "issuer")
    key_id, key = assertion_signer(state, secrets)
    return Issuer(did, key_id, key), key
