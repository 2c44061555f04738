"""The loopback URL of the local API server (kept apart so that computing it imports no Gradio)."""

from __future__ import annotations


def api_url(host: str, port: int) -> str:
    loop = "127.0.0.1" if host in ("0.0.0.0", "", "localhost") else "[::1]" if host == "::" else host
    return f"http://{loop}:{port}"
