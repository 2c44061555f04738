"""Error bodies that quote the request only in short, bounded excerpts.

FastAPI's own 422 lists each field error with the `input` that failed it, so a megabyte sent in
a field came back in the error; a route's own message can quote what was sent too. Here every
error body (FastAPI's validation errors, and every HTTPException's detail) is bounded:

- in a list of field errors, each string (a key in `loc`, the message, a value in `ctx`) is cut
  to `EXCERPT` characters, the `input`s of all errors together share `BUDGET` characters (a
  structure is quoted as its JSON text), and at most `MAX_ERRORS` errors are listed (then one
  entry saying how many more there were);
- a one-line message is cut to `MAX_LINE` characters per line, `MAX_LINES` lines.

Installed on the API (create_app) and on the Gradio app mounted beside it (rekd/app.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from rekd_core.excerpts import excerpt

EXCERPT = 60  # characters of one quoted string (a loc key, a ctx value, one input)
BUDGET = 200  # characters of input quoted by one error body, all errors together
MAX_MSG = 300  # characters of one error's message
MAX_ERRORS = 20  # field errors listed; the rest are counted
MAX_LINE = 300  # characters per line of a plain message
MAX_LINES = 50


class _Budget:
    def __init__(self, chars: int) -> None:
        self.left = chars

    def quote(self, value: Any) -> Any:
        """The input as sent when short (numbers, booleans, null as they are); else an excerpt of its text."""
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            text = value
        else:
            try:
                text = json.dumps(jsonable_encoder(value), ensure_ascii=False)
            except (TypeError, ValueError):
                text = repr(value)
            if len(text) <= min(EXCERPT, self.left):
                self.left -= len(text)
                return jsonable_encoder(value)
        take = min(len(text), EXCERPT, self.left)
        self.left -= take
        return text if take == len(text) else text[:take] + "…"


def _bounded_error(err: Any, budget: _Budget) -> Any:
    if not isinstance(err, dict):
        return excerpt(str(err), MAX_MSG)
    out: dict[str, Any] = {}
    for key, value in err.items():
        if key == "input":
            out[key] = budget.quote(value)
        elif key == "loc" and isinstance(value, (list, tuple)):
            out[key] = [excerpt(p, EXCERPT) if isinstance(p, str) else p for p in value]
        elif key == "msg" and isinstance(value, str):
            out[key] = excerpt(value, MAX_MSG)
        elif key == "ctx" and isinstance(value, dict):
            out[key] = {k: v if v is None or isinstance(v, (bool, int, float)) else excerpt(str(v), EXCERPT)
                        for k, v in value.items()}
        elif key == "url":
            out[key] = value
        elif isinstance(value, str):
            out[key] = excerpt(value, MAX_MSG)
        else:
            out[key] = budget.quote(value)
    return out


def bounded_errors(errors: Sequence[Any]) -> list[Any]:
    """A list of field errors (FastAPI's or a route's own), every quote of the request bounded."""
    budget = _Budget(BUDGET)
    out = [_bounded_error(e, budget) for e in list(errors)[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        out.append({"type": "too_many_errors", "loc": [], "msg": f"and {len(errors) - MAX_ERRORS} more errors"})
    return out


def bounded_detail(detail: Any) -> Any:
    """An HTTPException's detail: a message cut per line, a list of field errors bounded."""
    if isinstance(detail, str):
        lines = detail.splitlines() or [detail]
        kept = [excerpt(line, MAX_LINE) for line in lines[:MAX_LINES]]
        if len(lines) > MAX_LINES:
            kept.append(f"… and {len(lines) - MAX_LINES} more lines")
        return "\n".join(kept) if kept != lines else detail
    if isinstance(detail, (list, tuple)):
        return bounded_errors(detail)
    if isinstance(detail, dict):
        return _bounded_error(detail, _Budget(BUDGET))
    return detail


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(bounded_errors(exc.errors()))})


async def bounded_http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    bounded = bounded_detail(exc.detail)
    if bounded is not exc.detail:
        exc = StarletteHTTPException(exc.status_code, bounded, headers=exc.headers)
    return await http_exception_handler(request, exc)


# for FastAPI(exception_handlers=...), e.g. Gradio's app_kwargs
HANDLERS: dict[Any, Any] = {RequestValidationError: validation_error_handler,
                            StarletteHTTPException: bounded_http_exception_handler}


def install_error_handlers(app: FastAPI) -> None:
    for exc_class, handler in HANDLERS.items():
        app.add_exception_handler(exc_class, handler)
