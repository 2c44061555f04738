"""The product's web server: the API (backend) with the UI (ui) mounted at `/`.

This is the only place the two meet; the UI still reaches the API over HTTP (REKD_API_URL, or
this server's own loopback address), so it can as well be pointed at a remote backend.
"""

from __future__ import annotations

import os

import gradio as gr
from fastapi import FastAPI

from backend.main import create_app
from backend.settings import get_settings
from ui.app import THEME, build_ui
from ui.client import ApiClient
from ui.render import CSS

from .app_url import api_url


def create() -> FastAPI:
    settings = get_settings()
    app = create_app()
    api = ApiClient(os.environ.get("REKD_API_URL") or api_url(settings.host, settings.port), token=settings.api_token)
    # with a token, the UI asks for it too (any user name): otherwise it would launch runs for anyone
    auth = (lambda _user, password: password == settings.api_token) if settings.api_token else None
    return gr.mount_gradio_app(app, build_ui(api), path="/", auth=auth, ssr_mode=False, theme=THEME, css=CSS,
                               footer_links=["api"], auth_message="Log in with any user name and the API token.")


app = create()
