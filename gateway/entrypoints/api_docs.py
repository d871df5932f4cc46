"""``/docs``: the interactive OpenAPI page, served offline.

Government networks are often closed, so Swagger UI's script and style come from
an installed package, never from a CDN: ``fastapi-offline``, which ships Swagger UI 5
(the first major version that renders OpenAPI 3.1, the version of ``/openapi.json``).
Only its static files are used; the page and its start-up script are ours.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["install_api_docs"]

ASSETS = "/docs/assets"

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}: API</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/docs-init.js"></script>
</body>
</html>
"""

# In its own file rather than inline, so that a Content-Security-Policy without 'unsafe-inline' allows it.
_INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"
});
"""


def _assets_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install_api_docs(app: FastAPI, title: str) -> None:
    """``GET /docs`` (Swagger UI over ``/openapi.json``) and its assets under ``/docs/assets``."""
    page = _PAGE.format(title=html.escape(title), assets=ASSETS)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get(f"{ASSETS}/docs-init.js", include_in_schema=False)
    async def docs_init() -> HTMLResponse:
        return HTMLResponse(_INIT, media_type="text/javascript")

    app.mount(ASSETS, StaticFiles(directory=_assets_dir()), name="docs-assets")
