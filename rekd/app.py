"""The product's web server: the API (backend) with the UI (ui) mounted at `/`.

This is the only place the two meet; the UI still reaches the API over HTTP (REKD_API_URL, or
this server's own loopback address), so it can as well be pointed at a remote backend.

Every request body, the UI's included, is capped at REKD_MAX_UPLOAD_BYTES (413, before the route
reads it): Gradio's own upload route would otherwise spool a file of any size to its temp
folder. Gradio is told the same limit (`max_file_size`: its upload widgets refuse a larger file
before sending it), and its error bodies quote the request only in bounded excerpts, as the
API's do (backend/errors.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
import plotly
from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.errors import HANDLERS
from backend.main import create_app
from backend.routes.explain import capped_receive, too_large
from service.settings import get_settings
from ui.app import HEAD, PLOTLY_JS, THEME, build_ui
from ui.client import ApiClient
from ui.render import CSS

from .app_url import api_url


class BodyCap:
    """Refuses a request body over `cap` bytes with 413: by its Content-Length before the app runs,
    or, sent without one (chunked), as soon as the bytes received pass the cap."""

    def __init__(self, app: ASGIApp, cap: int) -> None:
        self.app, self.cap = app, cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.cap:
            err = too_large(self.cap)
            await JSONResponse({"detail": err.detail}, status_code=413)(scope, receive, send)
            return
        # a chunked or understated body: counted as it arrives (an HTTPException: the app answers 413)
        await self.app(scope, capped_receive(receive, self.cap), send)


def create() -> FastAPI:
    settings = get_settings()
    app = create_app()
    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"

    @app.get(PLOTLY_JS, include_in_schema=False)
    def _plotly_js() -> FileResponse:  # the UI's charts, from the installed package: no CDN, works offline
        return FileResponse(plotly_js, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    # download links are same-origin (this server serves the API), unless REKD_PUBLIC_API_URL names
    # the API's address as a browser reaches it
    api = ApiClient(os.environ.get("REKD_API_URL") or api_url(settings.host, settings.port), token=settings.api_token,
                    public_base=os.environ.get("REKD_PUBLIC_API_URL", ""))
    # with a token, the UI asks for it too (any user name): otherwise it would launch runs for anyone
    auth = (lambda _user, password: password == settings.api_token) if settings.api_token else None
    app = gr.mount_gradio_app(app, build_ui(api), path="/", auth=auth, ssr_mode=False, theme=THEME, css=CSS,
                              head=HEAD, footer_links=["api"], max_file_size=settings.max_upload_bytes,
                              app_kwargs={"exception_handlers": dict(HANDLERS)},
                              auth_message="Log in with any user name and the API token.")
    app.add_middleware(BodyCap, cap=settings.max_upload_bytes)
    return app


app = create()
