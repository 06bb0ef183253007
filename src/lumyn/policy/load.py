"""Read policy YAML safely into JSON-equivalent data plus a map of where each value sits.

The YAML is composed to nodes (C loader when available), never constructed from arbitrary
tags: Python tags, binary and sets are rejected; size, depth and alias expansion are bounded,
so a hostile file fails fast instead of hanging or executing anything.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

try:  # the C loader is much faster; fall back when libyaml is absent
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_POLICY_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 200_000

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One located policy problem."""

    message: str
    line: int | None = None
    rule_id: str | None = None
    key: str | None = None
    severity: str = "error"  # or "warning": printed, fatal only under --strict

    def as_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "rule_id": self.rule_id, "key": self.key,
                "line": self.line, "message": self.message}

    def format(self, source: str = "policy.yml") -> str:
        where = f"{source}:{self.line}" if self.line else source
        parts = [where]
        if self.rule_id:
            parts.append(f"rule {self.rule_id}")
        if self.key:
            parts.append(f"key {self.key}")
        return ": ".join(parts) + f": {self.message}"


@dataclass
class LoadedYaml:
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int | None:
        # Walk up until a located ancestor: errors about a missing key point at its parent.
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


class YamlRejected(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


_SCALAR_CONSTRUCTOR = yaml.SafeLoader("")  # used only to turn scalar nodes into values


def load_yaml(text: str) -> LoadedYaml:
    """Parse one YAML document of a policy. Raises YamlRejected with a located problem."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise YamlRejected(Problem(f"policy file is larger than {MAX_POLICY_BYTES} bytes"))
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise YamlRejected(Problem(f"YAML syntax error: {exc.problem}", line=line)) from None
    except yaml.YAMLError as exc:
        raise YamlRejected(Problem(f"YAML error: {exc}")) from None
    if node is None:
        raise YamlRejected(Problem("policy file is empty"))
    loaded = LoadedYaml(data=None)
    loaded.data = _convert(node, (), loaded, [0], 0)
    return loaded


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _convert(node: yaml.Node, path: Path, out: LoadedYaml, count: list[int], depth: int) -> Any:
    # Aliases are expanded as they are visited, so counting visits bounds an alias bomb
    # ("billion laughs") and the depth limit stops self-referencing aliases.
    count[0] += 1
    if count[0] > MAX_NODES:
        raise YamlRejected(
            Problem(f"policy expands to more than {MAX_NODES} YAML nodes (alias bomb?)")
        )
    if depth > MAX_DEPTH:
        raise YamlRejected(Problem(f"policy nests deeper than {MAX_DEPTH} levels", line=_line(node)))
    out.lines.setdefault(path, _line(node))
    if isinstance(node, yaml.MappingNode):
        if node.tag != "tag:yaml.org,2002:map":
            raise _bad_tag(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlRejected(Problem("mapping keys must be plain strings", line=_line(key_node)))
            key = key_node.value
            if key in result:
                raise YamlRejected(Problem(f"duplicate key '{key}'", line=_line(key_node)))
            out.lines[(*path, key)] = _line(key_node)
            result[key] = _convert(value_node, (*path, key), out, count, depth + 1)
        return result
    if isinstance(node, yaml.SequenceNode):
        if node.tag != "tag:yaml.org,2002:seq":
            raise _bad_tag(node)
        return [
            _convert(item, (*path, index), out, count, depth + 1)
            for index, item in enumerate(node.value)
        ]
    return _scalar(node)


_ALLOWED_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
}


def _bad_tag(node: yaml.Node) -> YamlRejected:
    return YamlRejected(Problem(f"YAML tag '{node.tag}' is not allowed", line=_line(node)))


def _scalar(node: yaml.Node) -> Any:
    if node.tag not in _ALLOWED_SCALAR_TAGS:
        raise _bad_tag(node)
    try:
        value = _SCALAR_CONSTRUCTOR.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise YamlRejected(Problem(f"bad scalar value: {exc}", line=_line(node))) from None
    if isinstance(value, _dt.date | _dt.datetime):
        return value.isoformat()  # JSON has no dates; keep the text form
    if isinstance(value, float) and not math.isfinite(value):
        raise YamlRejected(Problem("NaN and infinite numbers are not allowed", line=_line(node)))
    return value
