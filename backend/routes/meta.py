"""Presets, the config schema and health."""

from __future__ import annotations

import time
from typing import Any

import redis
from fastapi import APIRouter
from pydantic import BaseModel

from rekd_core.config import ExperimentConfig
from rekd_core.presets import PRESETS
from rekd_core.sweeps import SWEEPS
from service import keys

from ..deps import SettingsDep, SyncRedisDep

router = APIRouter(tags=["meta"])


class PresetInfo(BaseModel):
    name: str
    summary: str
    offline: bool
    config: dict


class Health(BaseModel):
    ok: bool
    redis: bool
    workers: list[str]
    queue_depth: int | None
    runs_dir: str
    detail: str | None = None


@router.get("/api/presets", response_model=list[PresetInfo])
def presets() -> list[PresetInfo]:
    return [PresetInfo(name=p.name, summary=p.summary, offline=p.offline, config=p.config) for p in PRESETS.values()]


@router.get("/api/config/schema", response_model=dict[str, Any],
            description="The JSON schema of an experiment config (the body of `POST /api/runs` under `config`), "
                        "with its `$defs`: the one schema the CLI, the API and the stored runs share.")
def config_schema() -> dict[str, Any]:
    return ExperimentConfig.model_json_schema()


class SweepPresetInfo(BaseModel):
    name: str
    summary: str
    offline: bool
    spec: dict


@router.get("/api/sweep-presets", response_model=list[SweepPresetInfo])
def sweep_presets() -> list[SweepPresetInfo]:
    """The named sweeps (`POST /api/sweeps {"preset": name}`): the paper's protocol and offline ones."""
    return [SweepPresetInfo(name=p.name, summary=p.summary, offline=p.offline, spec=p.spec) for p in SWEEPS.values()]


@router.get("/api/health", response_model=Health)
def health(settings: SettingsDep, r: SyncRedisDep) -> Health:
    try:
        r.ping()
        # bytes from this client (no decode_responses); redis-py types a key as bytes | str
        beats = {k.decode() if isinstance(k, bytes) else k: float(v) for k, v in r.hgetall(keys.WORKERS).items()}
        depth = int(r.llen(settings.queue))
    except redis.RedisError as err:
        return Health(ok=False, redis=False, workers=[], queue_depth=None, runs_dir=str(settings.runs_dir),
                      detail=f"Redis unreachable: {err}")
    # a worker beats every 2 s; one silent for 15 s is gone
    alive = sorted(w for w, t in beats.items() if time.time() - t < 15)
    return Health(ok=bool(alive), redis=True, workers=alive, queue_depth=depth, runs_dir=str(settings.runs_dir),
                  detail=None if alive else "no worker is alive: start one with `rekd worker`")
