"""The policy packs shipped inside the package (mirrored under policies/ in the repo)."""

from __future__ import annotations

from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent / "policies"

# Short names accepted by `lumyn init --policy-template NAME`.
BUNDLED_PACKS: dict[str, str] = {
    "support": "lumyn-support.v0.yml",
    "account": "packs/lumyn-account.v0.yml",
    "billing": "packs/lumyn-billing.v0.yml",
}
DEFAULT_PACK = "support"


def bundled_policy_path(name: str = DEFAULT_PACK) -> Path:
    return _ROOT / BUNDLED_PACKS[name]


def resolve_template(name_or_path: str) -> Path:
    """A bundled pack by short name, file name (`lumyn-billing.v0.yml`), repo-relative path
    (`policies/packs/lumyn-billing.v0.yml`), or any existing file path."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    if name_or_path in BUNDLED_PACKS:
        return bundled_policy_path(name_or_path)
    tail = name_or_path.removeprefix("policies/")
    for stem, relative in BUNDLED_PACKS.items():
        if tail in (relative, Path(relative).name, f"lumyn-{stem}", f"lumyn-{stem}.v0"):
            return bundled_policy_path(stem)
    return candidate  # let the caller report "file not found" with this path
