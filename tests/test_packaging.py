"""What `pip install .` resolves is what the test suite (`pip install '.[dev]'`) runs against."""

from __future__ import annotations

import importlib.metadata as metadata
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _project() -> dict[str, object]:
    data = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    project: dict[str, object] = data["project"]
    return project


def _probes(version: Version) -> list[Version]:
    """The installed version and the next patch and minor releases after it (a 0.x minor
    release is where jsonschema-rs breaks; major releases are left to the caps that exist)."""
    major, minor, micro = (*version.release, 0, 0)[:3]
    return [version, Version(f"{major}.{minor}.{micro + 1}"), Version(f"{major}.{minor + 1}.0")]


def test_a_plain_install_cannot_resolve_what_the_dev_tools_exclude() -> None:
    """For every runtime dependency that a dev tool also constrains (jsonschema-rs by
    schemathesis), the project's own range admits no version the dev tool rejects; otherwise
    a plain install would get a newer release than the one the suite was run with."""
    project = _project()
    runtime = {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}  # type: ignore[arg-type]
    dev = [Requirement(r) for r in project["optional-dependencies"]["dev"]]  # type: ignore[index]
    checked = []
    for tool in dev:
        for raw in metadata.requires(tool.name) or []:
            needed = Requirement(raw)
            name = canonicalize_name(needed.name)
            if name not in runtime or needed.marker is not None or not needed.specifier:
                continue
            installed = Version(metadata.version(needed.name))
            for probe in _probes(installed):
                if probe in runtime[name].specifier:
                    assert probe in needed.specifier, (
                        f"pyproject allows {needed.name} {probe}, which {tool.name} (dev extra) "
                        f"rejects ({needed.specifier}): cap the runtime requirement to match")
            checked.append((tool.name, name))
    assert ("schemathesis", "jsonschema-rs") in checked
