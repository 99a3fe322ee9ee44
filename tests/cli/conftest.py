"""Fixtures for the didctl tests: one real node per module, keystores in tmp dirs, a CliRunner helper.

Each :class:`Didctl` keeps its trust store next to its keystore and, unless
told otherwise (``auto_trust=False``: the tests of first contact), accepts
the node the first time a command meets it unknown (``didctl trust add
--yes`` with the same global options), then runs the command again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner, Result

from cli.didctl import main
from tests.conftest import RunningNode

PASSPHRASE = "correct horse battery staple"
# Global options of didctl that take a value (to repeat them for `trust add`).
_VALUE_OPTIONS = {"--node", "--keystore", "--timeout", "--tls-ca", "--tls-cert", "--tls-key", "--tls-server-name", "--trust-dir"}


def global_options(args: tuple[str, ...]) -> list[str]:
    """The global options at the head of a didctl command line (without --json)."""
    out: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("--"):
        name = args[i].split("=", 1)[0]
        if name in _VALUE_OPTIONS and "=" not in args[i]:
            out += args[i : i + 2]
            i += 2
            continue
        if name != "--json":
            out.append(args[i])
        i += 1
    return out


@dataclass
class Didctl:
    """Runs didctl in-process against one node with one keystore."""

    node: RunningNode
    keystore: Path
    runner: CliRunner = field(default_factory=CliRunner)
    auto_trust: bool = True

    @property
    def trust_dir(self) -> Path:
        return self.keystore.parent / "trust"

    def env(self, **extra: str | None) -> dict[str, str | None]:
        env: dict[str, str | None] = {
            "DIDNODE_ADDR": self.node.address,
            "DIDCTL_KEYSTORE": str(self.keystore),
            "DIDCTL_PASSPHRASE": PASSPHRASE,
            "DIDCTL_TRUST_DIR": str(self.trust_dir),
            "DIDCTL_TRUST": None,
        }
        env.update(extra)
        return env

    def invoke(self, *args: str, code: int = 0, input: str | None = None, **env: str | None) -> Result:
        """Run ``didctl ARGS``; assert the exit code (tracebacks are never caught)."""
        result = self.runner.invoke(main, list(args), input=input, env=self.env(**env), catch_exceptions=False)
        if self.auto_trust and result.exit_code == 6 and result.stderr.rstrip().endswith("[UNKNOWN_NODE]"):
            accepted = self.runner.invoke(main, [*global_options(args), "trust", "add", "--yes"], env=self.env(**env), catch_exceptions=False)
            # A node that cannot even be accepted (unreachable, TLS refused) fails the command the same way.
            result = accepted if accepted.exit_code != 0 else self.runner.invoke(main, list(args), input=input, env=self.env(**env), catch_exceptions=False)
        assert result.exit_code == code, f"didctl {' '.join(args)} -> {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        return result

    def trust(self, *global_args: str) -> None:
        """Accept the node now (``didctl trust add --yes``; nothing changes when it is already trusted)."""
        self.invoke(*global_args, "trust", "add", "--yes")

    def json(self, *args: str, code: int = 0, **env: str | None) -> Any:
        """Run ``didctl --json ARGS`` and parse stdout (exactly one JSON document)."""
        result = self.invoke("--json", *args, code=code, **env)
        return json.loads(result.stdout)

    def create(self, *args: str) -> str:
        return str(self.json("did", "create", *args)["did"])

    def fail(self, *args: str, code: int, reason: str, **env: str | None) -> Result:
        """Run and expect one ``didctl: ... [REASON]`` line on stderr and ``code``."""
        result = self.invoke(*args, code=code, **env)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("didctl: ") and lines[0].endswith(f"[{reason}]"), lines[0]
        return result


@pytest.fixture(scope="module")
def ctl(shared_node: RunningNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Didctl]:
    """didctl against the module's node, with an initialized keystore."""
    c = Didctl(shared_node, tmp_path_factory.mktemp("didctl") / "keystore")
    c.invoke("keystore", "init")
    yield c
