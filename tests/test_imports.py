"""The import structure holds: client code loads no server, and no module imports itself in a circle.

The first half imports each client-side entry point in a fresh interpreter (as a
device would) and lists what got loaded (the pattern of sigstore-python's
``test/unit/test_imports.py``). The second half reads every import statement of
the project's own code and looks for strongly connected components.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER_PACKAGES = ("didnode.store", "didnode.ledger", "didnode.service", "didnode.transport", "didnode.http")
# The node's own binaries are server code by definition; everything else in cli/ is a client.
SERVER_SIDE_ENTRY_POINTS = {"cli.didnode"}


def _loaded_after_import(module: str) -> list[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _server_modules(loaded: list[str]) -> list[str]:
    return [m for m in loaded if m == "lmdb" or m.startswith("lmdb.") or any(m == p or m.startswith(p + ".") for p in SERVER_PACKAGES)]


@pytest.mark.parametrize(
    "module",
    [
        "didnode.auth",
        "didnode.client",
        "didnode.wire",
        "didnode.wire.status",
        "didnode.wire.handshake",
        "didnode.wire.ledger",
        "didnode.wire.transparency",
        "didnode.wire.credentials",
        "didnode.wire.handlers",
        "didnode.keystore",
        "didnode.provisioning.run",
        "didnode.data",
        "didnode.data.gateway",
        "didnode.data.uplink",
        "cli.didctl",
    ],
)
def test_client_side_loads_no_server_code(module: str) -> None:
    """A device that imports the SDK or the client library, or runs didctl, loads neither LMDB nor any server package."""
    assert _server_modules(_loaded_after_import(module)) == []


def test_the_rule_has_teeth() -> None:
    """The node's own entry point does load the server: the check above would see it."""
    assert "didnode.store.env" in _server_modules(_loaded_after_import("cli.didnode"))


# --------------------------------------------------------------------------
# No import circles
# --------------------------------------------------------------------------

SOURCE_ROOTS = ("didnode", "cli", "bench", "tools")


def _module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every project module (generated code and virtualenvs left out)."""
    out: dict[str, Path] = {}
    for root in SOURCE_ROOTS:
        for path in (ROOT / root).rglob("*.py"):
            rel = path.relative_to(ROOT)
            if any(part.startswith(".venv") for part in rel.parts) or rel.parts[:3] == ("didnode", "api", "v1"):
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _targets(node: ast.AST, current: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
    """The project modules an import statement loads (a name imported from a package may be its submodule)."""
    found: list[str] = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in modules:
                found.append(alias.name)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base_parts = current.split(".") if is_package else current.split(".")[:-1]
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in modules:
                found.append(sub)
            elif base in modules:
                found.append(base)
    return found


def _import_graph() -> dict[str, set[str]]:
    modules = _module_files()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name].update(t for t in _targets(node, name, is_package, modules) if t != name)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_circles() -> None:
    """Every import, at module level or inside a function, points one way."""
    assert _circles(_import_graph()) == []


def test_the_circle_finder_finds_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _circles(graph) == [["a", "b", "c"]]
