"""Fixtures for the didctl tests: one real node per module, keystores in tmp dirs, a CliRunner helper."""

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


@dataclass
class Didctl:
    """Runs didctl in-process against one node with one keystore."""

    node: RunningNode
    keystore: Path
    runner: CliRunner = field(default_factory=CliRunner)

    def env(self, **extra: str | None) -> dict[str, str | None]:
        env: dict[str, str | None] = {
            "DIDNODE_ADDR": self.node.address,
            "DIDCTL_KEYSTORE": str(self.keystore),
            "DIDCTL_PASSPHRASE": PASSPHRASE,
        }
        env.update(extra)
        return env

    def invoke(self, *args: str, code: int = 0, input: str | None = None, **env: str | None) -> Result:
        """Run ``didctl ARGS``; assert the exit code (tracebacks are never caught)."""
        result = self.runner.invoke(main, list(args), input=input, env=self.env(**env), catch_exceptions=False)
        assert result.exit_code == code, f"didctl {' '.join(args)} -> {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        return result

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
