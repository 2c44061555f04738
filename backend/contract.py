"""What the OpenAPI schema states, the server enforces, and the other way round.

- Every run or sweep id (in a path, a query or a form field) carries the pattern and length the
  routes check (runs_fs.check_run_id, sweeps._record_or_404): a request outside it is a 422, and
  the schema says so, so a client (or a fuzzer) knows the valid ids without trying.
- A request body that cannot be parsed at all (not UTF-8) is FastAPI's 400: documented on every
  operation that takes a body.
- A form field is sent or not, never null: the multipart bodies say a field is optional, not
  nullable; and a form that takes exactly one of two fields says so (oneOf), as the JSON bodies
  do (RunCreate, SweepCreate).
- A method a path does not support is 405 with an `Allow` header, on every path the API routes,
  whatever else is mounted beside it (the UI at `/` would otherwise answer 404); a method no
  route of this server supports at all (TRACE, CONNECT, anything not standard) is 405 everywhere.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.routing import Match, Mount, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from rekd_core.store.runstore import RUN_ID_RE

# RUN_ID_RE (\A...\Z) in the ECMA-262 dialect OpenAPI uses; the tests check that they agree
ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
ID_MAX_LENGTH = 128
ID_PARAMS = ("run_id", "sweep_id", "runs", "baseline", "baseline_run")
UNPARSED = {"description": "the request body could not be parsed (e.g. JSON that is not UTF-8)",
            "content": {"application/json": {"schema": {
                "type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}}}}
# multipart bodies' one-of rules (the JSON bodies state theirs in their models), by path
FORM_ONE_OF = {"/api/explain": ("file", "text")}
SERVED = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
assert RUN_ID_RE.pattern == r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z", "update ID_PATTERN with RUN_ID_RE"


def _id(schema: dict[str, Any]) -> None:
    """A run / sweep id's pattern on a string, on an array's items, on each branch of an anyOf."""
    if schema.get("type") == "string":
        schema.update(pattern=ID_PATTERN, minLength=1, maxLength=ID_MAX_LENGTH)
    elif schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        _id(schema["items"])
    for branch in schema.get("anyOf", []):
        _id(branch)


def _form(body: dict[str, Any], one_of: tuple[str, ...] | None) -> None:
    for name, prop in body.get("properties", {}).items():
        branches = prop.get("anyOf")
        if branches and {"type": "null"} in branches:  # absent, never null
            rest = [b for b in branches if b != {"type": "null"}]
            del prop["anyOf"]
            prop.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        if name in ID_PARAMS:
            _id(prop)
    if one_of:
        body["oneOf"] = [{"required": [f]} for f in one_of]


def _state_the_contract(app: FastAPI) -> None:
    inner = app.openapi

    def openapi() -> dict[str, Any]:
        schema = inner()
        components = schema.get("components", {}).get("schemas", {})
        for path, ops in schema.get("paths", {}).items():
            for op in ops.values():
                if not isinstance(op, dict):
                    continue
                for p in op.get("parameters", []):
                    if p.get("in") in ("path", "query") and p.get("name") in ID_PARAMS:
                        _id(p["schema"])
                if "requestBody" in op:
                    op.setdefault("responses", {}).setdefault("400", UNPARSED)
                form = op.get("requestBody", {}).get("content", {}).get("multipart/form-data")
                ref = (form or {}).get("schema", {}).get("$ref", "")
                if ref.rsplit("/", 1)[-1] in components:
                    _form(components[ref.rsplit("/", 1)[-1]], FORM_ONE_OF.get(path))
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
    _state_the_contract(app)
    app.add_middleware(MethodNotAllowed, api=app)
