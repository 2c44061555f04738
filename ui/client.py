"""The UI's only way to the backend: its HTTP API (no torch, no engine imports here)."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

import httpx


class ApiError(Exception):
    """A refused request, with the backend's message and, for 422, the message of each field."""

    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or {}


def _field_of(loc: list[Any]) -> str:
    # ["body", "config", "loss", "alpha"] -> "loss.alpha"; ["body", "name"] -> "name"
    parts = [str(p) for p in loc]
    while parts and parts[0] in ("body", "config", "preset", "overrides"):
        parts = parts[1:]
    return ".".join(parts) or "request"


def error_from(resp: httpx.Response) -> ApiError:
    try:
        detail = resp.json().get("detail")
    except ValueError:
        detail = resp.text[:300] or resp.reason_phrase
    if isinstance(detail, list):  # FastAPI / pydantic validation errors
        fields: dict[str, str] = {}
        for err in detail:
            if isinstance(err, dict):
                key = _field_of(err.get("loc") or [])
                fields[key] = f"{fields[key]}; {err.get('msg')}" if key in fields else str(err.get("msg"))
        text = "; ".join(f"{k}: {v}" for k, v in fields.items())
        return ApiError(resp.status_code, text or "invalid request", fields)
    return ApiError(resp.status_code, str(detail))


class ApiClient:
    """Synchronous client for the rekd API; every failure becomes an ApiError."""

    def __init__(self, base: str, token: str | None = None, timeout: float = 60.0, public_base: str = "") -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base = base.rstrip("/")
        # where the *browser* reaches the API, for download links: "" when the UI is served by the
        # API server itself (same origin), else the API's public URL
        self.public_base = public_base.rstrip("/")
        self._http = httpx.Client(base_url=self.base, headers=headers, timeout=timeout)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.HTTPError as err:
            raise ApiError(503, f"the API at {self.base} did not answer ({type(err).__name__}: {err})") from None
        if resp.status_code >= 400:
            raise error_from(resp)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    # --- meta ---
    def health(self) -> dict[str, Any]:
        return self._call("GET", "/api/health")

    def presets(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/presets")

    def config_schema(self) -> dict[str, Any]:
        return self._call("GET", "/api/config/schema")

    def datasets(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/datasets")

    def pipelines(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/pipelines")

    def launch_pipeline(self, name: str, overrides: list[str] | None = None) -> dict[str, Any]:
        return self._call("POST", "/api/pipelines", json={"name": name, "overrides": overrides or []})

    # --- sweeps ---
    def sweep_presets(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/sweep-presets")

    def sweeps(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/sweeps")

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/sweeps/{sweep_id}")

    def launch_sweep(self, preset: str, overrides: list[str] | None = None) -> dict[str, Any]:
        return self._call("POST", "/api/sweeps", json={"preset": preset, "overrides": overrides or []})

    def cancel_sweep(self, sweep_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/sweeps/{sweep_id}/cancel")

    # --- runs ---
    def runs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/runs")

    def run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/runs/{run_id}")

    def launch(self, preset: str | None = None, overrides: list[str] | None = None,
               config: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"overrides": overrides or []}
        body.update({"preset": preset} if config is None else {"config": config})
        return self._call("POST", "/api/runs", json=body)

    def clone(self, run_id: str, overrides: list[str] | None = None) -> dict[str, Any]:
        return self._call("POST", f"/api/runs/{run_id}/clone", json={"overrides": overrides or []})

    def compare(self, runs: list[str], *, filter: str = "disagree", offset: int = 0, limit: int = 12) -> dict[str, Any]:
        return self._call("GET", "/api/compare", params={"runs": runs, "filter": filter, "offset": offset,
                                                         "limit": limit})

    def link(self, path: str, **params: Any) -> str:
        """A URL for the browser (a download link), not for this client."""
        query = httpx.QueryParams({k: v for k, v in params.items() if v is not None})
        return f"{self.public_base}{path}" + (f"?{query}" if query else "")

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/runs/{run_id}/cancel")

    def metrics(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/runs/{run_id}/metrics")

    def examples(self, run_id: str, *, step: int | None = None, offset: int = 0, limit: int = 12,
                 filter: str = "all", label: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"offset": offset, "limit": limit, "filter": filter}
        if step is not None:
            params["step"] = step
        if label is not None:
            params["label"] = label
        return self._call("GET", f"/api/runs/{run_id}/examples", params=params)

    def inspect_dataset(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/api/datasets/inspect", json=body)

    def faithfulness(self, run_id: str, baseline: str | None = None, step: int | None = None) -> dict[str, Any]:
        params = {k: v for k, v in {"baseline": baseline, "step": step}.items() if v is not None}
        return self._call("GET", f"/api/runs/{run_id}/faithfulness", params=params)

    def explain(self, run_id: str, *, image_path: str | None = None, text: str | None = None,
                baseline_run: str | None = None, evidence_path: str | None = None,
                rationale: str | None = None) -> dict[str, Any]:
        """Explain an upload; with `evidence_path` (a mask image, image runs) or `rationale` (highlighted
        substrings, one per line, text runs) the answer also scores the rationale against it."""
        data = {"run_id": run_id, **({"baseline_run": baseline_run} if baseline_run else {})}
        if image_path is not None:
            files: dict[str, tuple[str, Any, str]] = {}
            try:
                files["file"] = _upload(image_path)
                if evidence_path:
                    files["evidence"] = _upload(evidence_path)
                return self._call("POST", "/api/explain", data=data, files=files)
            finally:
                for _, fh, _ in files.values():
                    fh.close()
        if rationale and rationale.strip():
            data["rationale"] = rationale
        return self._call("POST", "/api/explain", data={**data, "text": text or ""})


def _upload(path_str: str) -> tuple[str, Any, str]:
    path = Path(path_str)
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return path.name, path.open("rb"), mime
