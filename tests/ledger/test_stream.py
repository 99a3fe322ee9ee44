"""The cluster stream's pure parts: names, subjects, message bodies, delivery metadata."""

from __future__ import annotations

import pytest

from didnode.core.operations import Proof
from didnode.errors import MalformedMessage
from didnode.ledger import stream as st
from tests.factory import new_create


def test_names_and_subjects() -> None:
    assert st.default_stream_name("local") == "DIDNODE_LOCAL"
    assert st.default_stream_name("acme-prod") == "DIDNODE_ACME_PROD"
    ident, _ = new_create()
    subject = st.subject_for("local", ident.did)
    assert subject == "didnode.local.op." + ident.did.split(":")[2]
    assert st.did_for_subject(subject) == ident.did
    assert st.subject_filter("local") == "didnode.local.op.*"


def test_body_round_trip_is_the_operation_as_submitted() -> None:
    _, op = new_create()
    body = st.encode_body(op.payload, op.proofs)
    assert st.decode_body(body) == (op.payload, op.proofs)
    assert len(body) < st.MAX_BODY_BYTES


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x02" + b"\x00" * 8,  # unknown version
        b"\x01\x00\x00\x00\x05abc",  # truncated payload
        st.encode_body(b"{}", [Proof("did:dnode:x#key-1", bytes(64))])[:-1],  # truncated signature
        st.encode_body(b"{}", []) + b"x",  # trailing bytes
        b"\x01\x00\x00\x00\x00\x01\x00\x02\xff\xfe" + bytes(64),  # kid not UTF-8
    ],
)
def test_malformed_bodies_are_rejected(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        st.decode_body(data)


def test_delivery_metadata_both_reply_forms() -> None:
    d = st.parse_ack_reply("$JS.ACK.DIDNODE_LOCAL.c1.1.42.40.1795568011986678744.7")
    assert (d.stream_seq, d.timestamp_ns, d.pending) == (42, 1795568011986678744, 7)
    d = st.parse_ack_reply("$JS.ACK.dom.acchash.DIDNODE_LOCAL.c1.1.43.41.1795568011986678745.0.rnd")
    assert (d.stream_seq, d.timestamp_ns, d.pending) == (43, 1795568011986678745, 0)
    with pytest.raises(MalformedMessage):
        st.parse_ack_reply("_INBOX.abc")


def test_stream_config_never_loses_messages() -> None:
    cfg = st.stream_config("DIDNODE_LOCAL", "local", 3, 120, atomic=True)
    assert cfg["num_replicas"] == 3 and cfg["storage"] == "file"
    assert cfg["deny_delete"] and cfg["deny_purge"] and not cfg["allow_rollup_hdrs"]
    assert cfg["max_msgs"] == cfg["max_bytes"] == cfg["max_msgs_per_subject"] == -1 and cfg["max_age"] == 0
    assert cfg["duplicate_window"] == 120 * 10**9 and cfg["allow_atomic"]
    assert "allow_atomic" not in st.stream_config("S", "local", 1, 120, atomic=False)
