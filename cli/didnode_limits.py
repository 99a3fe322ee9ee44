"""``didnode serve``'s resource-limit options and the :class:`~didnode.transport.limits.Limits` they make.

Defaults are :class:`Limits`' (docs/security.md, "Limits"; README, "Node options").
"""

from __future__ import annotations

from typing import Any, Callable

import click

from didnode.core.ratelimit import Rate
from didnode.transport.limits import Limits

_D = Limits()
SECONDS = click.FloatRange(0)

# (option, Limits field or rate part, type, env, help)
_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--max-calls", "max_calls", click.IntRange(1), "Calls open at once in total; more are refused RESOURCE_EXHAUSTED."),
    ("--max-calls-per-peer", "max_calls_per_peer", click.IntRange(1), "Calls open at once from one peer address (IPv6: one /64), counted from before their request arrives; more are refused TOO_MANY_CALLS."),
    ("--max-batch-chunks", "max_batch_chunks", click.IntRange(1), "SubmitBatch chunks read and not yet answered, all streams together (memory: 256 KiB each at most); a stream waits for room."),
    ("--max-batch-chunks-per-peer", "max_batch_chunks_per_peer", click.IntRange(1), "The same, from one peer address."),
    ("--max-connections", "max_connections", click.IntRange(0), "Connections at once in total (0: the file-descriptor limit, raised to its hard limit, minus 256)."),
    ("--connect-timeout", "connect_timeout_s", click.FloatRange(0, min_open=True), "SECONDS a new connection has to send its HTTP/2 preface."),
    ("--idle-timeout", "connection_idle_s", SECONDS, "SECONDS a connection without calls stays open (0: forever)."),
    ("--max-connection-age", "connection_age_s", SECONDS, "SECONDS a connection lives; its open calls then get as long again (0: forever)."),
    ("--stream-idle-timeout", "stream_idle_s", click.FloatRange(0, min_open=True), "SECONDS a batch stream with nothing pending may send nothing before it is closed (IDLE_TIMEOUT)."),
    ("--submit-rate", "submit_rate.per_second", click.IntRange(0), "Operations per second one peer address may submit (0: unlimited)."),
    ("--submit-burst", "submit_rate.burst", click.IntRange(0), "Operations one peer address may submit at once (at least 1,024, a batch chunk)."),
    ("--handshake-rate", "handshake_rate.per_second", click.IntRange(0), "Handshakes and session credentials per second per peer address (0: unlimited)."),
    ("--handshake-burst", "handshake_rate.burst", click.IntRange(0), "Handshakes and session credentials one peer address may ask at once."),
    ("--invalid-submit-cost", "invalid_submit_cost", click.IntRange(0), "Submission tokens a Submit refused as forged or malformed costs its peer on top (0: none)."),
    ("--refusal-hold-ms", "refusal_hold_ms", click.IntRange(0), "A call refused RATE_LIMITED (or a forged Submit from a peer in debt) is answered after at most this many ms: a refused peer slows down (0: at once)."),
]


def _default(path: str) -> Any:
    value: Any = _D
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _param(option: str) -> str:
    return "limit_" + option.lstrip("-").replace("-", "_")


def limit_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the limit options to a click command; it receives them as ``limit_*`` keyword arguments."""
    for option, path, kind, text in reversed(_OPTIONS):
        env = "DIDNODE_" + option.lstrip("-").replace("-", "_").upper()
        fn = click.option(option, _param(option), default=_default(path), show_default=True, type=kind, envvar=env, help=text)(fn)
    return fn


def limits_from(args: dict[str, Any]) -> Limits:
    """The :class:`Limits` of the ``limit_*`` arguments; raises :class:`click.UsageError` for a contradiction."""
    fields: dict[str, Any] = {}
    rates: dict[str, dict[str, int]] = {}
    for option, path, _kind, _text in _OPTIONS:
        value = args[_param(option)]
        if "." in path:
            name, part = path.split(".")
            rates.setdefault(name, {})[part] = value
        else:
            fields[path] = value
    try:
        for name, parts in rates.items():
            fields[name] = Rate(parts["per_second"], parts["burst"])
        return Limits(**fields)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
