"""The OpenAPI schema states the contract the server enforces.

Against a real server, with the UI mounted as `rekd up` serves it: every run and sweep id in a
path carries the pattern the server checks; the request bodies that take exactly one of two
fields say so (oneOf) and refuse unknown keys (additionalProperties: false); a method a path
does not support is 405 with an Allow header (TRACE too), never 404; and a cancelled sweep
reports its runs as cancelled, not failed.
"""

from __future__ import annotations

import re

import pytest

from rekd_core.store.runstore import RUN_ID_RE
from tests.support.service import start_service


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    s = start_service(tmp_path_factory.mktemp("door-schema"), workers=0, ui=True)
    yield s
    s.stop()


def test_path_ids_state_their_pattern(svc):
    with svc.client() as c:
        schema = c.get("/openapi.json").json()
    ids = []
    for path, ops in schema["paths"].items():
        for op in ops.values():
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    ids.append((path, p["name"], p["schema"]))
    assert len(ids) >= 10
    for path, name, s in ids:
        assert name in ("run_id", "sweep_id"), (path, name)
        assert s.get("pattern") and s.get("maxLength") == 128, (path, name, s)
        pattern = re.compile(s["pattern"])
        assert pattern.fullmatch("20250101-000000-demo-ab12") and not pattern.fullmatch("..")
        assert not pattern.fullmatch("a" * 129) or s["maxLength"] == 128
        # the server's own check agrees with the stated pattern
        for probe in ("a", "a.b-c_d", "-a", ".hidden", "a/b", "a b"):
            assert bool(pattern.fullmatch(probe)) == bool(RUN_ID_RE.fullmatch(probe)), probe


def _body(schema, path):
    ref = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    ref = ref.get("$ref") or next(x["$ref"] for x in ref.get("anyOf", []) if "$ref" in x)
    return schema["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_one_of_rules_and_closed_bodies_are_in_the_schema(svc):
    with svc.client() as c:
        schema = c.get("/openapi.json").json()
        runs = _body(schema, "/api/runs")
        assert sorted(tuple(x["required"]) for x in runs["oneOf"]) == [("config",), ("preset",)]
        sweeps = _body(schema, "/api/sweeps")
        assert sorted(tuple(x["required"]) for x in sweeps["oneOf"]) == [("preset",), ("spec",)]
        for path in ("/api/runs", "/api/sweeps", "/api/pipelines", "/api/datasets/inspect",
                     "/api/runs/{run_id}/clone"):
            assert _body(schema, path).get("additionalProperties") is False, path
        # and the server keeps the rule it states
        for body in ({}, {"preset": "fmnist-student", "config": {}}):
            assert c.post("/api/runs", json=body).status_code == 422
        assert c.post("/api/sweeps", json={}).status_code == 422


def test_unsupported_methods_are_405_with_allow(svc):
    with svc.client() as c:
        for method, path in (("TRACE", "/api/runs"), ("TRACE", "/api/health"), ("PUT", "/api/runs"),
                             ("DELETE", "/api/sweeps"), ("PATCH", "/api/runs/some-run"), ("TRACE", "/"),
                             ("TRACE", "/api/runs/some-run/events"), ("CONNECT", "/api/presets")):
            r = c.request(method, path)
            assert r.status_code == 405, (method, path, r.status_code, r.text[:200])
            assert r.headers.get("allow"), (method, path)
            assert method not in r.headers["allow"]
        assert c.get("/api/health").status_code == 200
        assert "GET" in c.request("TRACE", "/api/health").headers["allow"]


def test_a_cancelled_sweep_counts_its_runs_as_cancelled(svc):
    with svc.client() as c:
        r = c.post("/api/sweeps", json={"preset": "sweep-fmnist", "overrides": ["train.max_steps=2"]})
        assert r.status_code == 201, r.text
        sweep_id = r.json()["id"]
        r = c.post(f"/api/sweeps/{sweep_id}/cancel")
        assert r.status_code == 202 and set(r.json()["runs"].values()) == {"cancelled"}, r.text
        detail = c.get(f"/api/sweeps/{sweep_id}").json()
        assert detail["state"] == "cancelled"
        assert detail["failed"] == 0 and detail["cancelled"] == detail["n_runs"], detail
        listed = {s["id"]: s for s in c.get("/api/sweeps").json()}[sweep_id]
        assert listed["failed"] == 0 and listed["cancelled"] == listed["n_runs"], listed
