"""The FastAPI app: routers per resource, nothing else."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from rekd_core import __version__
from rekd_core.analysis.explain import set_model_cache_size
from service.settings import get_settings

from . import contract
from .errors import install_error_handlers
from .routes import compare, datasets, examples, explain, faithfulness, meta, metrics, pipelines, quality, runs, sweeps


def create_app() -> FastAPI:
    set_model_cache_size(get_settings().explain_cache_size)
    app = FastAPI(title="rekd", version=__version__,
                  description="Launch, watch and inspect rationale-extraction (RE / REKD) runs; explain inputs.")
    # in this order: the run's views (examples ... faithfulness) keep their place among the {run_id:path} routes
    for router in (runs.router, pipelines.router, sweeps.router, examples.router, metrics.router,
                   quality.router, faithfulness.router, compare.router, explain.router, meta.router, datasets.router):
        app.include_router(router)
    _document_all_422s(app)
    contract.install(app)  # id patterns in the schema; 405 (not 404) for a method a path does not serve
    install_error_handlers(app)  # error bodies quote the request only in bounded excerpts
    return app


def _document_all_422s(app: FastAPI) -> None:
    """A 422 carries either FastAPI's list of field errors or our one-line message (an invalid run id,
    a text too long); say so once in the schema, so every 422 of every route conforms to it."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = plain()
            err = schema.get("components", {}).get("schemas", {}).get("HTTPValidationError")
            if err is not None:
                err["properties"]["detail"] = {"title": "Detail", "anyOf": [
                    {"type": "string"}, {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}]}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


app = create_app()
