"""The product's web server: the API (backend) with the UI (ui) mounted at `/`.

This is the only place the two meet; the UI still reaches the API over HTTP (REKD_API_URL, or
this server's own loopback address), so it can as well be pointed at a remote backend.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
import plotly
from fastapi import FastAPI
from fastapi.responses import FileResponse

from backend.main import create_app
from backend.settings import get_settings
from ui.app import HEAD, PLOTLY_JS, THEME, build_ui
from ui.client import ApiClient
from ui.render import CSS

from .app_url import api_url


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
    return gr.mount_gradio_app(app, build_ui(api), path="/", auth=auth, ssr_mode=False, theme=THEME, css=CSS, head=HEAD,
                               footer_links=["api"], auth_message="Log in with any user name and the API token.")


app = create()
