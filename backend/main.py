"""The FastAPI app: routers per resource, nothing else."""

from __future__ import annotations

from fastapi import FastAPI

from rekd_core import __version__

from .routes import examples, explain, meta, pipelines, runs, sweeps


def create_app() -> FastAPI:
    app = FastAPI(title="rekd", version=__version__,
                  description="Launch, watch and inspect rationale-extraction (RE / REKD) runs; explain inputs.")
    for module in (runs, pipelines, sweeps, examples, explain, meta):
        app.include_router(module.router)
    return app


app = create_app()
