"""All configuration of the service layer (API and worker), read from the environment once.

No other module reads the environment: everything takes a `Settings`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rekd_core.data.sources import builtin_data_roots


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REKD_", extra="ignore")

    redis_url: str | None = Field(None, description="Redis URL; unset: `rekd up` starts an embedded redis-server")
    runs_dir: Path = Field(Path("runs"), description="where run directories live (the source of truth)")
    queue: str = Field("rekd", description="the Celery queue runs are sent to")
    lease_ttl_s: float = Field(30.0, gt=0, description="a run's lease expires this long after its last renewal")
    max_attempts: int = Field(3, ge=1, description="times a run may be started before it is failed as crash-looping")
    reconcile_every_s: float = Field(10.0, gt=0, description="how often workers look for runs whose worker vanished")
    visibility_timeout_s: int = Field(3600, gt=0, description="broker redelivery of unacknowledged tasks")
    stream_maxlen: int = Field(100_000, gt=0, description="events kept per run in its live Redis stream")
    max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0, description="largest request body accepted (every "
                                  "route under `rekd up`, Gradio uploads included; /api/explain everywhere)")
    max_image_pixels: int = Field(4096 * 4096, gt=0, description="larger images are refused (decompression bombs)")
    max_text_chars: int = Field(20_000, gt=0, description="longest text accepted for explanation")
    explain_cache_size: int = Field(8, ge=1, description="trained models kept loaded for /api/explain")
    host: str = "127.0.0.1"
    port: int = 8000
    api_token: str | None = Field(None, description="if set, mutating endpoints require it as a Bearer token")
    data_roots: str | None = Field(
        None, description="more folders (separated by ':') the API may read user data, data.root, tokenizers and "
                          "weights files from, besides the runs directory's data/ folder and the built-in datasets' "
                          "own folders (always allowed)")
    max_params: int = Field(500_000_000, gt=0, description="largest model a run may build (generator and predictor "
                                                           "together), in parameters; larger runs are refused")
    step_delay_s: float = Field(0.0, ge=0, description="test/demo hook, never set in production: the worker "
                                "sleeps this many seconds before each training step (checking for a cancel, a lost "
                                "lease or a shutdown meanwhile), so a run lasts max_steps x this however fast the "
                                "machine, and fault tests can act mid-run; 0 (the default) adds nothing")

    def allowed_data_roots(self) -> list[Path]:
        """The folders the API reads user data from (symlinks resolved): <runs_dir>/data, the built-in
        datasets' folders and REKD_DATA_ROOTS. A path elsewhere is refused without being read."""
        extra = [Path(p) for p in (self.data_roots or "").split(os.pathsep) if p.strip()]
        roots = [(self.runs_dir / "data"), *builtin_data_roots(), *extra]
        return list(dict.fromkeys(p.expanduser().resolve() for p in roots))

    def allowed_run_roots(self) -> list[Path]:
        """The folders a run directory named by path (model.teacher_run, model.init_from) may lie in:
        the runs directory and the data roots."""
        return list(dict.fromkeys([self.runs_dir.expanduser().resolve(), *self.allowed_data_roots()]))

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
