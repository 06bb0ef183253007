"""Reliability campaign fixtures. Long tests carry @pytest.mark.slow and run only with
LUMYN_RUN_SLOW=1 (scripts/reliability.sh sets it); otherwise they are deselected, not skipped."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LUMYN_RUN_SLOW") == "1":
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
