"""The `/docs` page: the OpenAPI document rendered as plain HTML on the server.

FastAPI's default page loads Swagger UI's JavaScript and CSS from a public CDN, which an
offline deployment cannot reach and a strict one should not trust. This page has no scripts
and no external assets: each operation with its summary, request body and responses, and a
link to the full `/openapi.json`.
"""

from __future__ import annotations

from html import escape
from typing import Any

METHODS = ("get", "post", "put", "patch", "delete")


def render(spec: dict[str, Any]) -> str:
    info = spec.get("info") or {}
    title = escape(str(info.get("title", "API")))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{title}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "code{background:#eee;padding:0 .2em}</style></head><body>",
        f"<h1>{title} <small>{escape(str(info.get('version', '')))}</small></h1>",
        f"<p>{escape(str(info.get('description', '')))}</p>",
        "<p>Machine-readable: <a href='openapi.json'>openapi.json</a> (same authentication "
        "as this page).</p>",
    ]
    for path, operations in sorted((spec.get("paths") or {}).items()):
        for method in METHODS:
            operation = operations.get(method)
            if operation is None:
                continue
            parts.append(f"<h2><code>{method.upper()} {escape(path)}</code></h2>")
            parts.append(f"<p>{escape(str(operation.get('summary', '')))}</p>")
            if "requestBody" in operation:
                parts.append("<p>Request body: <code>application/json</code></p>")
            codes = ", ".join(escape(str(code)) for code in operation.get("responses") or {})
            parts.append(f"<p>Responses: {codes}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
