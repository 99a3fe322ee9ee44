"""TLS from the command line (docs/tls.md): ``didnode tls init``, and ``didctl --tls-*`` against real TLS nodes.

Every failure is one line on stderr with its reason and exit code 5 (TLS)
or 2 (usage); one case runs didctl as a subprocess, so that anything grpc's
C core printed would show on the same stderr.
"""

from __future__ import annotations

import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner
from cryptography import x509

from cli.didnode import main as didnode_main
from tests.auth.test_e2e_devices import serve_device
from tests.cli.conftest import PASSPHRASE, Didctl
from tests.conftest import BIN, ROOT, RunningNode, start_node
from tests.tlsfiles import Pki, make_pki

EXIT_TLS = 5


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mtls_node(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """A node that requires client certificates of the test CA."""
    n = start_node(tmp_path_factory.mktemp("mtls") / "node", extra=pki.node_args(client_ca="ca"))
    yield n
    n.stop()


def tls_env(pki: Pki, ca: str = "ca", cert: str | None = "client") -> dict[str, str | None]:
    """The environment of didctl trusting ``ca`` and presenting ``cert`` (None: no client certificate)."""
    return {
        "DIDNODE_TLS_CA": str(pki.pem(ca)),
        "DIDNODE_TLS_CERT": str(pki.pem(cert)) if cert else None,
        "DIDNODE_TLS_KEY": str(pki.key(cert)) if cert else None,
    }


@dataclass
class TlsDidctl(Didctl):
    """Didctl whose environment also carries ``tls`` (a call's own variables win; None unsets)."""

    tls: dict[str, str | None] = field(default_factory=dict)

    def env(self, **extra: str | None) -> dict[str, str | None]:
        return super().env(**{**self.tls, **extra})


@pytest.fixture(scope="module")
def tctl(mtls_node: RunningNode, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> TlsDidctl:
    """didctl against the mutual-TLS node, with the right CA and client certificate in its environment."""
    return TlsDidctl(mtls_node, tmp_path_factory.mktemp("didctl") / "keystore", tls=tls_env(pki))


# --------------------------------------------------------------------------
# didctl
# --------------------------------------------------------------------------


def test_didctl_end_to_end_over_mutual_tls(tctl: TlsDidctl, pki: Pki) -> None:
    flags = ["--tls-ca", str(pki.pem("ca")), "--tls-cert", str(pki.pem("client")), "--tls-key", str(pki.key("client"))]
    no_env = dict.fromkeys(tctl.tls)
    info = tctl.json(*flags, "node", "info", **no_env)
    assert info["nodeDid"].startswith("did:dnode:") and info["address"] == tctl.node.address
    # The same through the environment: create (keystore made on the way) and resolve.
    did = tctl.json("did", "create")["did"]
    assert tctl.json("did", "resolve", did)["didDocument"]["id"] == did


def test_didctl_wrong_ca(tctl: TlsDidctl, pki: Pki) -> None:
    result = tctl.fail("--json", "node", "info", code=EXIT_TLS, reason="TLS_UNTRUSTED_CERTIFICATE", **tls_env(pki, ca="other-ca"))
    assert '"TLS_UNTRUSTED_CERTIFICATE"' in result.stdout


def test_didctl_missing_client_certificate(tctl: TlsDidctl, pki: Pki) -> None:
    result = tctl.fail("node", "info", code=EXIT_TLS, reason="TLS_CLIENT_CERTIFICATE_REQUIRED", **tls_env(pki, cert=None))
    assert "--tls-cert" in result.stderr


def test_didctl_unusable_files(tctl: TlsDidctl, pki: Pki, tmp_path: Path) -> None:
    tctl.fail("node", "info", code=EXIT_TLS, reason="TLS_FILE_INVALID", DIDNODE_TLS_CA=str(tmp_path / "missing.pem"))
    result = tctl.fail("node", "info", code=EXIT_TLS, reason="TLS_FILE_INVALID", DIDNODE_TLS_KEY=str(pki.key("node")))
    assert "does not belong" in result.stderr


def test_didctl_option_combinations(tctl: TlsDidctl, pki: Pki) -> None:
    no_env = dict.fromkeys(tctl.tls)
    for args in (["--tls-cert", str(pki.pem("client"))], ["--tls-cert", str(pki.pem("client")), "--tls-key", str(pki.key("client"))], ["--tls-server-name", "x"]):
        result = tctl.invoke(*args, "node", "info", code=2, **no_env)
        assert "--tls" in result.stderr


def test_didctl_plaintext_to_a_tls_node_says_why(tctl: TlsDidctl) -> None:
    result = tctl.fail("--timeout", "5", "node", "info", code=3, reason="NODE_UNAVAILABLE", **dict.fromkeys(tctl.tls))
    assert "requires TLS" in result.stderr


def test_didctl_subprocess_prints_one_line(mtls_node: RunningNode, pki: Pki, tmp_path: Path) -> None:
    cmd = [str(BIN / "didctl"), "--node", mtls_node.address, "--tls-ca", str(pki.pem("other-ca")), "node", "info"]
    env = {"PATH": str(BIN), "DIDCTL_KEYSTORE": str(tmp_path / "ks"), "DIDCTL_PASSPHRASE": PASSPHRASE}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == EXIT_TLS and proc.stdout == ""
    assert len(lines) == 1 and lines[0].startswith("didctl: TLS with ") and lines[0].endswith("[TLS_UNTRUSTED_CERTIFICATE]"), proc.stderr


def test_device_serve_and_auth_over_mutual_tls(tctl: TlsDidctl, pki: Pki) -> None:
    """``didctl device serve --tls-*`` answers ``didctl auth --peer-tls-ca``; both reach the node over mutual TLS."""
    a, b = tctl.json("did", "create")["did"], tctl.json("did", "create")["did"]
    device = serve_device(tctl, b, *pki.node_args(client_ca="ca"))
    try:
        data = tctl.json("auth", "--as", a, device.address, "--peer-tls-ca", str(pki.pem("ca")), "--expect", b)
        assert data["peer"] == b
        tctl.fail("auth", "--as", a, device.address, "--peer-tls-ca", str(pki.pem("other-ca")), code=EXIT_TLS, reason="TLS_UNTRUSTED_CERTIFICATE")
    finally:
        code, stderr = device.stop()
    assert code == 0 and "TLS, client certificates required" in stderr, stderr


def test_device_serve_refuses_plaintext_off_loopback(tctl: TlsDidctl) -> None:
    """The node's rule holds for a device's responder too: plaintext only on loopback, else INSECURE_LISTEN."""
    a = tctl.json("did", "create")["did"]
    result = tctl.fail("device", "serve", "--as", a, "--listen", "0.0.0.0:0", code=1, reason="INSECURE_LISTEN")
    assert "--insecure-plaintext" in result.stderr


# --------------------------------------------------------------------------
# didnode tls init
# --------------------------------------------------------------------------


def tls_init(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(didnode_main, ["tls", "init", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_tls_init_writes_a_ca_a_node_and_clients(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    code, stdout, stderr = tls_init("--out", str(out), "--client", "dev-1", "--client", "ops")
    assert code == 0, stderr
    names = ["ca", "node", "client-dev-1", "client-ops"]
    assert stdout.split() == [str(out / f"{n}{ext}") for n in names for ext in (".pem", ".key")]
    assert "didnode serve --tls-cert" in stderr and "didctl --tls-ca" in stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for n in names:
        assert stat.S_IMODE((out / f"{n}.key").stat().st_mode) == 0o600
        assert stat.S_IMODE((out / f"{n}.pem").stat().st_mode) == 0o644
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    node = x509.load_pem_x509_certificate((out / "node.pem").read_bytes())
    san = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert node.issuer == ca.subject and ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    node.verify_directly_issued_by(ca)
    client = x509.load_pem_x509_certificate((out / "client-ops.pem").read_bytes())
    client.verify_directly_issued_by(ca)
    assert (node.not_valid_after_utc - node.not_valid_before_utc).days == 90


def test_tls_init_names_and_days(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    assert tls_init("--out", str(out), "--name", "node1.example.org", "--name", "10.0.0.7", "--name", "::1", "--days", "7")[0] == 0
    node = x509.load_pem_x509_certificate((out / "node.pem").read_bytes())
    san = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node1.example.org"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7", "::1"]
    assert (node.not_valid_after_utc - node.not_valid_before_utc).days == 7


def test_tls_init_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    assert tls_init("--out", str(out))[0] == 0
    before = (out / "ca.key").read_bytes()
    code, _, stderr = tls_init("--out", str(out))
    assert code == 1 and len(stderr.strip().splitlines()) == 1 and "--force" in stderr and "already exist" in stderr
    assert (out / "ca.key").read_bytes() == before
    assert tls_init("--out", str(out), "--force")[0] == 0
    assert (out / "ca.key").read_bytes() != before


def test_tls_init_refuses_bad_names(tmp_path: Path) -> None:
    for args in (["--name", "not a host"], ["--client", "../escape"], ["--client", "a", "--client", "a"]):
        code, _, stderr = tls_init("--out", str(tmp_path / "tls"), *args)
        assert code == 1 and stderr.strip().endswith("[INVALID_ARGUMENT]"), (args, stderr)
    assert not (tmp_path / "tls").exists()


def test_tls_init_files_serve_and_connect(tmp_path: Path) -> None:
    """What tls init writes is what a node serves and didctl trusts."""
    out = tmp_path / "tls"
    assert tls_init("--out", str(out), "--client", "me")[0] == 0
    node = start_node(tmp_path / "node", extra=["--tls-cert", str(out / "node.pem"), "--tls-key", str(out / "node.key"), "--tls-client-ca", str(out / "ca.pem")])
    try:
        c = Didctl(node, tmp_path / "ks")
        flags = ["--tls-ca", str(out / "ca.pem"), "--tls-cert", str(out / "client-me.pem"), "--tls-key", str(out / "client-me.key")]
        assert c.json(*flags, "node", "info")["network"] == "local"
    finally:
        node.stop()
