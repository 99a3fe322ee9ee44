"""``didctl data record | gateway | anchor``: the device and gateway side of data integrity (docs/data.md).

Adds its commands to :data:`cli.didctl_data.data_group`. Keys come from the
keystore (:mod:`cli.signing`): a device records and signs heads with its
newest current authentication key; an anchor (by a gateway, or the device
itself) is signed with a current assertionMethod key of the submitting DID.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

import click

from cli.didctl_common import Ctl, checked_did, command, note
from cli.didctl_data import data_group
from cli.signing import active_state, assertion_signer, auth_signer, network_of, secrets_of
from didnode.clock import wall_ms
from didnode.core.data.heads import MAX_COUNT
from didnode.core.data.records import check_stream
from didnode.data.gateway import Anchorer, Gateway, serve
from didnode.data.recorder import Recorder
from didnode.data.store import SegmentStore
from didnode.data.uplink import GatewayClient, Sent, anchor_pending, send_pending
from didnode.errors import HeadRefused, InvalidArgument, TlsFileInvalid

LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")
MAX_LINE = 65536  # a reading's payload: one JSON line


def _stream(value: str) -> str:
    return check_stream(value)


def _outcome_json(sent: list[Sent]) -> list[dict[str, Any]]:
    return [
        {"first": s.head.head.first, "count": s.head.head.count, "anchored": s.outcome.anchored, "position": s.outcome.position, "reason": s.outcome.reason or None}
        for s in sent
    ]


def _settled(ctl: Ctl, sent: list[Sent], data: dict[str, Any], lines: list[str]) -> None:
    """Print the outcome; one refused head makes the command fail (exit 1) after printing what did anchor."""
    data["heads"] = _outcome_json(sent)
    for s in sent:
        h = s.head.head
        if s.outcome.anchored:
            lines.append(f"anchored {h.stream} {h.first}..{h.end - 1} at position {s.outcome.position}")
        else:
            lines.append(f"not anchored {h.stream} {h.first}..{h.end - 1}: {s.outcome.reason}")
    ctl.emit(data, "\n".join(lines))
    refused = [s for s in sent if not s.outcome.anchored]
    if refused:
        r = refused[0]
        raise HeadRefused(
            f"{len(refused)} of {len(sent)} heads not anchored (first: {r.head.head.stream} from {r.head.head.first}: {r.outcome.reason}); "
            "they stay pending in the store",
            refused=r.outcome.reason,
        )


def _anchorer(ctl: Ctl, did: str, role: str) -> Anchorer:
    secrets = secrets_of(ctl, did, role)
    state = active_state(ctl, did, role)
    key_id, key = assertion_signer(state, secrets)
    return Anchorer(ctl.client(), network_of(ctl), did, key_id, key)


def _readings(source: TextIO) -> Any:
    """(line number, payload bytes) of each non-empty line; a line that is not UTF-8 JSON is refused with its number."""
    n = 0
    lines = iter(source)
    while True:
        try:
            line = next(lines)
        except StopIteration:
            return
        except UnicodeDecodeError:
            # The file is decoded a buffer at a time: the bad bytes are at or after line n + 1.
            raise InvalidArgument(f"the readings are not UTF-8 text (after line {n})", field="line") from None
        n += 1
        text = line.strip()
        if not text:
            continue
        if len(text) > MAX_LINE:
            raise InvalidArgument(f"line {n}: a reading is at most {MAX_LINE} bytes", field="line")
        try:
            json.loads(text)
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # stdin read with surrogateescape (a C locale): bytes that are not UTF-8
            raise InvalidArgument(f"line {n} is not UTF-8 text", field="line") from None
        except ValueError as exc:
            raise InvalidArgument(f"line {n} is not a JSON value: {exc}", field="line") from None
        yield n, data


@command(data_group, "record")
@click.option("--as", "as_did", required=True, type=checked_did, help="The device's DID (its keys in the keystore).")
@click.option("--stream", required=True, type=_stream, help="Stream name (1-64 of [A-Za-z0-9._-]).")
@click.option("--store", "store_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="The device's segment store.")
@click.option("--segment-size", type=click.IntRange(1, MAX_COUNT), default=1024, show_default=True, help="Close a segment after N readings.")
@click.option("--segment-seconds", type=click.FloatRange(0.001), default=60.0, show_default=True, help="... or after T seconds.")
@click.option("--file", "file", type=click.File("r"), default=None, help="JSON lines to record (default: stdin).")
@click.option("--no-payloads", is_flag=True, help="Keep only the commitments, not the payloads.")
@click.option("--gateway", "gateway", default=None, metavar="ADDR", help="Send the signed heads to this data gateway.")
@click.option("--anchor", "self_anchor", is_flag=True, help="Anchor the signed heads with the device's own DID.")
def record(
    ctl: Ctl, as_did: str, stream: str, store_dir: Path, segment_size: int, segment_seconds: float,
    file: TextIO | None, no_payloads: bool, gateway: str | None, self_anchor: bool,
) -> None:
    """Record readings (JSON lines, each a payload) into the device's store; at the end of the input the open
    segment is closed and signed, and with --gateway or --anchor the pending heads are anchored."""
    if gateway and self_anchor:
        raise InvalidArgument("--gateway and --anchor exclude each other", field="anchor")
    secrets = secrets_of(ctl, as_did, "device")
    state = active_state(ctl, as_did, "device")
    kid, key = auth_signer(state, secrets)
    rec = Recorder(store_dir, network_of(ctl), as_did, kid.partition("#")[2], key, stream, segment_size, segment_seconds, keep_payloads=not no_payloads)
    first, count = rec.next_seq, 0
    with rec:
        for _, payload in _readings(file or sys.stdin):
            now = wall_ms()
            rec.maybe_close(now)
            rec.record(payload, now)
            count += 1
        rec.close_segment(wall_ms())
    store = SegmentStore(store_dir)
    data: dict[str, Any] = {"did": as_did, "stream": stream, "recorded": count, "first": first, "next": rec.next_seq}
    lines = [f"recorded {count} readings of {stream} ({first}..{rec.next_seq - 1})" if count else f"recorded no reading of {stream}"]
    if gateway:
        with GatewayClient(gateway, timeout=ctl.timeout) as gw:
            sent = send_pending(store, gw, stream)
    elif self_anchor:
        sent = anchor_pending(store, _anchorer(ctl, as_did, "device"), stream)
    else:
        pending = store.pending_heads(stream)
        data["pending"] = len(pending)
        ctl.emit(data, "\n".join([*lines, f"{len(pending)} signed heads wait for an anchor (didctl data anchor, or --gateway)"]))
        return
    _settled(ctl, sent, data, lines)


@command(data_group, "anchor")
@click.option("--as", "as_did", required=True, type=checked_did, help="The device's DID (a current assertionMethod key in the keystore).")
@click.option("--stream", required=True, type=_stream, help="Stream name.")
@click.option("--store", "store_dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path), help="The device's segment store.")
def anchor(ctl: Ctl, as_did: str, stream: str, store_dir: Path) -> None:
    """Anchor the stream's pending signed heads with the device's own DID (no gateway)."""
    store = SegmentStore(store_dir)
    sent = anchor_pending(store, _anchorer(ctl, as_did, "device"), stream)
    data: dict[str, Any] = {"did": as_did, "stream": stream}
    _settled(ctl, sent, data, [] if sent else [f"no pending head in {stream}"])


def _server_credentials(cert: Path | None, key: Path | None) -> Any:
    import grpc

    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InvalidArgument("--tls-cert and --tls-key go together", field="tls")
    try:
        return grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    except OSError as exc:
        raise TlsFileInvalid(f"cannot read {exc.filename}: {exc.strerror}") from None


@command(data_group, "gateway")
@click.option("--as", "as_did", required=True, type=checked_did, help="The gateway's DID (a current assertionMethod key in the keystore).")
@click.option("--listen", default="127.0.0.1:7420", show_default=True, metavar="HOST:PORT", help="Where devices connect (port 0: any).")
@click.option("--tls-server-cert", "cert", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Serve TLS with this certificate (required off loopback).")
@click.option("--tls-server-key", "key", type=click.Path(dir_okay=False, path_type=Path), default=None, help="... and this key.")
@click.option("--linger", type=click.FloatRange(0, 10), default=0.2, show_default=True, help="Seconds to gather heads before an anchor.")
@click.option("--max-seconds", type=click.FloatRange(0), default=None, help="Stop after this long (default: until interrupted).")
def gateway_command(ctl: Ctl, as_did: str, listen: str, cert: Path | None, key: Path | None, linger: float, max_seconds: float | None) -> None:
    """Serve the DataGateway service: collect devices' signed heads and anchor them in batches.

    Prints the address it listens on as its first line; stops on SIGINT/SIGTERM (or --max-seconds),
    anchoring what is queued first."""
    host = listen.rpartition(":")[0]
    creds = _server_credentials(cert, key)
    if creds is None and host not in LOOPBACK:
        raise InvalidArgument(f"a gateway listening on {host or 'every interface'} serves TLS: pass --tls-server-cert and --tls-server-key", field="listen")
    gw = Gateway(_anchorer(ctl, as_did, "gateway"), linger=linger)
    server, port = serve(gw, listen, creds)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)} if threading.current_thread() is threading.main_thread() else {}
    try:
        if not ctl.json_output:  # the address first (port 0 picks one); with --json it is in the final document
            click.echo(f"{host}:{port}")
        note(f"data gateway of {as_did} on {host}:{port}")
        stop.wait(max_seconds)
    finally:
        server.stop(2).wait(5)
        gw.close()
        for s, h in previous.items():
            signal.signal(s, h)
    ctl.emit({"gateway": as_did, "listen": f"{host}:{port}", "anchors": gw.anchorer.ops, "refused": gw.dropped}, f"stopped: {gw.anchorer.ops} anchors, {gw.dropped} heads refused")
