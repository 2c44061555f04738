"""What the OpenAPI schema states, the server enforces, and the other way round.

- Every run or sweep id in a path carries the pattern and length the routes check
  (runs_fs.check_run_id, sweeps._record_or_404): a request outside it is a 422, and the schema
  says so, so a client (or a fuzzer) knows the valid ids without trying.
- A method a path does not support is 405 with an `Allow` header, on every path the API routes,
  whatever else is mounted beside it (the UI at `/` would otherwise answer 404); a method no
  route of this server supports at all (TRACE, CONNECT, anything not standard) is 405 everywhere.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.routing import Match, Mount, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from rekd_core.runstore import RUN_ID_RE

# RUN_ID_RE (\A...\Z) in the ECMA-262 dialect OpenAPI uses; the tests check that they agree
ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
ID_MAX_LENGTH = 128
ID_PARAMS = ("run_id", "sweep_id")
SERVED = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
assert RUN_ID_RE.pattern == r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z", "update ID_PATTERN with RUN_ID_RE"


def _state_id_patterns(app: FastAPI) -> None:
    inner = app.openapi

    def openapi() -> dict[str, Any]:
        schema = inner()
        for ops in schema.get("paths", {}).values():
            for op in ops.values():
                for p in op.get("parameters", []) if isinstance(op, dict) else []:
                    if p.get("in") == "path" and p.get("name") in ID_PARAMS:
                        p["schema"].update(pattern=ID_PATTERN, minLength=1, maxLength=ID_MAX_LENGTH)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class MethodNotAllowed:
    """405 with `Allow` for a method the matching routes do not serve (before any mount can 404 it)."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api

    def _serves(self, scope: Scope) -> bool | None:
        """True: a route (not a mount) serves this method here; False: routes match the path, not
        the method; None: no route matches the path (a mount, or a 404)."""
        seen = None
        for route in self.api.router.routes:
            if isinstance(route, Mount) or isinstance(route, WebSocketRoute):
                continue
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return True
            if match == Match.PARTIAL:
                seen = False
        return seen

    def allowed(self, scope: Scope) -> list[str]:
        # FastAPI's included routers say only that the path matched: ask them method by method
        return [m for m in SERVED if self._serves({**scope, "method": m})]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = scope["method"]
            serves = self._serves(scope) if method in SERVED else None
            if serves is False or method not in SERVED:
                allowed = self.allowed(scope)
                allow = ", ".join(allowed or ("GET", "HEAD", "POST"))
                body = b'{"detail":"Method Not Allowed"}'
                await send({"type": "http.response.start", "status": 405,
                            "headers": [(b"content-type", b"application/json"), (b"allow", allow.encode()),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    _state_id_patterns(app)
    app.add_middleware(MethodNotAllowed, api=app)
