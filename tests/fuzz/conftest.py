"""The fuzz targets' marker (``-m fuzz`` selects the fuzz runs), and which targets this session runs."""

from __future__ import annotations

import pytest

from tests.fuzz import harness


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: a coverage-guided fuzz run of one parser (tests/fuzz/harness.py)")


def pytest_collection_finish(session: pytest.Session) -> None:
    harness.SELECTED[:] = [
        item.callspec.params["name"] for item in session.items if getattr(item, "originalname", "") == "test_fuzz" and hasattr(item, "callspec")
    ]
