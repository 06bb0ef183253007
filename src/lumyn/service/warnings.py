"""What `lumyn serve` warns about at start: configurations that look safe and are not."""

from __future__ import annotations

from lumyn.config import LumynConfig
from lumyn.errors import LumynError
from lumyn.store import open_store


def startup_warnings(config: LumynConfig) -> list[str]:
    warnings: list[str] = []
    if config.signing_secret and config.signing_scheme == "body":
        warnings.append(
            "signing scheme 'body' signs the body only: one captured signature over an empty "
            "body opens every GET route (any decision can be read), and a signed event body "
            "can be replayed on any decision; set LUMYN_SIGNING_SCHEME=v1 (docs/service.md)")
    if not config.tenant_keys:
        try:
            store = open_store(config.url, busy_timeout_ms=config.busy_timeout_ms)
            try:
                several = getattr(store, "several_tenants", lambda: False)()
            finally:
                store.close()
        except LumynError:
            several = False  # the store's own trouble is reported by /healthz and decides
        if several:
            warnings.append(
                "the store holds decisions of several tenants but no tenant keys are "
                "configured: every caller that can authenticate reads every tenant's decisions; "
                "configure tenant_keys (docs/service.md)")
    return warnings
