"""Shared plumbing of ``didctl``: the context object, output, parameter types.

Every command gets a :class:`Ctl` (the click context's ``obj``). It holds the
global options and opens the :class:`~didnode.client.Client` and the
:class:`~didnode.keystore.Keystore` lazily, so that commands that need
neither (``--help``) or only one of them (``did resolve`` needs no
passphrase) never pay for the other.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence, TypeVar

import click

from didnode.client import Client, Receipt
from didnode.core import builder
from didnode.core.did import key_id_of, validate_did
from didnode.core.service_rules import UNSAFE_CHAR_RE, check_service
from didnode.errors import KeystoreError
from didnode.keystore import Keystore, kdf_from_env
from didnode.wire.tls import TlsClientConfig

if TYPE_CHECKING:
    from cli.trust_store import Reads, TrustSource

PASSPHRASE_ENV = "DIDCTL_PASSPHRASE"
KEYSTORE_ENV = "DIDCTL_KEYSTORE"
NODE_ENV = "DIDNODE_ADDR"
DEFAULT_NODE = "127.0.0.1:50051"
DEFAULT_KEYSTORE = "~/.didctl/keystore"
DEFAULT_TIMEOUT = 30.0
TLS_CA_ENV = "DIDNODE_TLS_CA"
TLS_CERT_ENV = "DIDNODE_TLS_CERT"
TLS_KEY_ENV = "DIDNODE_TLS_KEY"
TLS_SERVER_NAME_ENV = "DIDNODE_TLS_SERVER_NAME"
TRUST_ENV = "DIDCTL_TRUST"
TRUST_DIR_ENV = "DIDCTL_TRUST_DIR"
DEFAULT_TRUST_DIR = "~/.didctl/trust"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Ctl:
    """Global options plus the lazily opened client and keystore of one invocation."""

    node: str
    keystore_path: Path
    json_output: bool
    timeout: float
    # TLS to the node (docs/tls.md): on with tls_ca; the files are read on first use.
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_server_name: str = ""
    _tls: TlsClientConfig | None = field(default=None, repr=False)
    _client: Client | None = field(default=None, repr=False)
    _keystore: Keystore | None = field(default=None, repr=False)
    # The node's network, learned from the first key state read (every key
    # state reply names it), so a signing command needs no GetInfo call.
    network: str | None = field(default=None, repr=False)
    # Trust (docs/trust.md, "The CLI"): --trust FILE, else the entry of the
    # node's address in trust_dir; --insecure-no-verify checks nothing.
    trust_file: Path | None = None
    trust_dir: Path = field(default_factory=lambda: Path(DEFAULT_TRUST_DIR).expanduser())
    insecure_no_verify: bool = False
    _reads: "Reads | None" = field(default=None, repr=False)

    # -- resources -------------------------------------------------------

    def client(self) -> Client:
        """The node client (created on first use; closed with the context)."""
        if self._client is None:
            self._client = Client(self.node, timeout=self.timeout, tls=self.tls())
        return self._client

    def tls(self) -> TlsClientConfig | None:
        """TLS to the node from ``--tls-*`` (files read and checked on first use), or None: plaintext.

        Raises :class:`~didnode.errors.TlsFileInvalid` naming a file that is missing or unusable.
        """
        if self.tls_ca is None:
            return None
        if self._tls is None:
            self._tls = TlsClientConfig.from_files(self.tls_ca, self.tls_cert, self.tls_key, self.tls_server_name or None)
        return self._tls

    def verified(self) -> "Reads":
        """The reads a decision may rest on, verified against the node's trust policy (created on first
        use; at first contact with an unknown node the user is asked, or :class:`~didnode.errors.UnknownNode`
        is raised without a terminal). With ``--insecure-no-verify``: the plain client."""
        if self._reads is None:
            from cli.trust_store import open_reads  # imports this module's helpers

            self._reads = open_reads(self.client(), self.trust_source(), self.insecure_no_verify)
        return self._reads

    def trust_source(self) -> "TrustSource":
        """Where this run's trust policy comes from (``--trust FILE`` or the store entry of ``--node``)."""
        from cli.trust_store import TrustSource, TrustStore

        return TrustSource(self.node, self.trust_file, TrustStore(self.trust_dir))

    def keystore(self, create: bool = False) -> Keystore:
        """The unlocked keystore; with ``create`` a missing one is created (passphrase asked twice)."""
        if self._keystore is None:
            creating = create and not Keystore.exists(self.keystore_path)
            passphrase = read_passphrase(self.keystore_path, confirm=creating)
            self._keystore = Keystore.open(self.keystore_path, passphrase, create=creating, kdf=kdf_from_env())
            if creating:
                note(f"created keystore {self.keystore_path}")
        return self._keystore

    def close(self) -> None:
        """Close the client channel and drop the keystore's derived key."""
        self._reads = None
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._keystore is not None:
            self._keystore.close()
            self._keystore = None

    # -- output ----------------------------------------------------------

    def emit(self, data: Any, text: str | Callable[[], str]) -> None:
        """Print ``data`` as one JSON document with ``--json``, else ``text`` (a string or a thunk)."""
        if self.json_output:
            # ensure_ascii (the default): every control, bidi and other non-ASCII
            # character leaves as a \uXXXX escape, never raw.
            click.echo(json.dumps(data, separators=(",", ":"), sort_keys=False))
        else:
            click.echo(safe_text(text() if callable(text) else text, newlines=True))


pass_ctl = click.make_pass_decorator(Ctl)


def read_passphrase(path: Path, confirm: bool) -> str:
    """The keystore passphrase: ``$DIDCTL_PASSPHRASE``, else a hidden prompt on the terminal."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None:
        if not value:
            raise KeystoreError(f"{PASSPHRASE_ENV} is set but empty; a keystore passphrase cannot be empty")
        return value
    try:
        return str(
            click.prompt(
                f"Passphrase for keystore {path}",
                hide_input=True,
                confirmation_prompt="Repeat the passphrase" if confirm else False,
                err=True,
            )
        )
    except click.Abort:
        raise KeystoreError(f"no passphrase given for keystore {path} (set {PASSPHRASE_ENV} or type it at the prompt)") from None


def note(message: str) -> None:
    """A progress or warning line for humans, on stderr (stdout stays machine-readable)."""
    click.echo(f"didctl: {safe_text(message)}", err=True)


def _escaped(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def safe_text(value: object, newlines: bool = False) -> str:
    """``str(value)`` fit for a terminal: nothing in it can move the cursor, set a title or reorder text.

    Every character Python does not call printable (C0 and C1 controls, DEL,
    format characters such as the bidi overrides U+202A-U+202E and isolates
    U+2066-U+2069, zero-width characters, line/paragraph separators, spaces
    other than U+0020, surrogates, private-use and unassigned code points) and
    every character of :data:`didnode.core.service_rules.UNSAFE_CHAR_RE`
    becomes a Python-style escape: ``\\x1b``, ``\\u202e``, ``\\U000e0041``. With
    ``newlines`` a line feed is kept (the renderer's own line breaks), else it
    is escaped too (one value stays on its line). Backslashes are not doubled:
    text output is for reading; ``--json`` is the exact form.
    """
    text = str(value)
    if text.isprintable() and not UNSAFE_CHAR_RE.search(text):
        return text
    return "".join(
        c if (c.isprintable() and not UNSAFE_CHAR_RE.match(c)) or (newlines and c == "\n") else _escaped(c) for c in text
    )


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        ctl = ctx.find_object(Ctl)
        if ctl is not None:
            ctl.json_output = True


def json_option(f: F) -> F:
    """``--json`` accepted after the subcommand too (``didctl did resolve X --json``)."""
    return click.option(  # type: ignore[return-value]
        "--json",
        "json_flag",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_json,
        help="Machine output: exactly one JSON document on stdout.",
    )(f)


def command(group: click.Group, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """``group.command`` with the shared ``--json`` option and the :class:`Ctl` passed first."""

    def wrap(f: F) -> F:
        return group.command(name, **kwargs)(json_option(pass_ctl(f)))  # type: ignore[return-value]

    return wrap


# --------------------------------------------------------------------------
# Parameter types
# --------------------------------------------------------------------------


def checked_did(value: str) -> str:
    """``value`` if it is a valid ``did:dnode`` DID; raises :class:`~didnode.errors.InvalidDid` (exit 1)."""
    return validate_did(value.strip())


def checked_key_id(did: str, value: str) -> str:
    """The key id ``value`` names among ``did``'s keys, in any form a user copies.

    ``key-1``, ``#key-1``, ``DID#key-1`` (and ``...key-1-jwk``, the JsonWebKey
    method of the same key) all give ``key-1``; see
    :func:`didnode.core.did.key_id_of`. A malformed reference raises
    :class:`~didnode.errors.InvalidDid`, a DID URL of another DID
    :class:`~didnode.errors.InvalidArgument` naming both (exit 1).
    """
    return key_id_of(did, value.strip())


@dataclass(frozen=True)
class ServiceSpec:
    """A ``--service ID=TYPE=URL`` value."""

    id: str
    type: str
    endpoint: str

    def to_json(self) -> dict[str, str]:
        return builder.service(self.id, self.type, self.endpoint)


class ServiceType(click.ParamType):
    """Parses ``ID=TYPE=URL`` (the URL may itself contain '=').

    A value that is not of that form is a usage error (exit 2); an entry that
    breaks the method's service rules raises the error the node would
    (:class:`~didnode.errors.InvalidService`, :class:`~didnode.errors.TooLarge`:
    one line, exit 1) before anything is generated, staged or signed.
    """

    name = "ID=TYPE=URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> ServiceSpec:
        if isinstance(value, ServiceSpec):
            return value
        parts = str(value).split("=", 2)
        if len(parts) != 3 or not all(parts):
            self.fail(f"{value!r} is not ID=TYPE=URL (e.g. hub=DIDCommMessaging=https://hub.example/didcomm)", param, ctx)
        return ServiceSpec(*check_service(*parts))


SERVICE = ServiceType()


# --------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------


def iso_ms(ms: int) -> str:
    """ISO 8601 UTC with milliseconds (precise enough to pass back as ``--version-time``)."""
    t = _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def short_did(did: str) -> str:
    """``did:dnode:QmAbcd…wxyz``: enough to tell DIDs apart in a table."""
    prefix, _, ident = did.rpartition(":")
    return f"{prefix}:{ident[:6]}…{ident[-4:]}" if len(ident) > 12 else did


def short_kid(kid: str, own: str) -> str:
    """``#key-1`` for the subject's own keys, a shortened DID URL for others."""
    did, _, frag = kid.partition("#")
    return f"#{frag}" if did == own else f"{short_did(did)}#{frag}"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain left-aligned text table; every cell goes through :func:`safe_text` (one line each)."""
    cells = [[safe_text(c) for c in headers]] + [[safe_text(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def receipt_json(receipt: Receipt, **extra: Any) -> dict[str, Any]:
    """The stable JSON shape of an accepted operation."""
    out: dict[str, Any] = {
        "did": receipt.did,
        "type": receipt.type,
        "seq": receipt.seq,
        "position": receipt.position,
        "time": iso_ms(receipt.time_ms),
        "opHash": receipt.op_hash.hex(),
    }
    out.update(extra)
    return out


def kv_lines(pairs: Mapping[str, object]) -> str:
    """``key  value`` lines, keys padded; keys and values go through :func:`safe_text` (one line each)."""
    lines = [(safe_text(k), safe_text(v)) for k, v in pairs.items()]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)


def stdin_is_tty() -> bool:
    """Whether a human can answer a confirmation prompt."""
    return sys.stdin is not None and sys.stdin.isatty()

