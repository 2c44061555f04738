"""No endpoint of the API or the UI serves a file outside the runs directory, and nothing is ever unpickled.

Against a real uvicorn server with the UI mounted (the way `rekd up` serves it). The traversal
cases replay the shapes of Gradio's and Starlette's path-traversal advisories: `..`, absolute
paths, percent-encoded and double-encoded variants, through every route that takes a path or id.
"""

from __future__ import annotations

import ast
import http.client
import pickle
from pathlib import Path

import httpx
import pytest

from conftest import tiny_vision
from rekd_core.config import parse_config
from rekd_core.store.runstore import RunStore
from tests.support.service import start_service

ROOT = Path(__file__).resolve().parents[2]
SECRET = "rekd-secret-outside-the-runs-dir"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sec")
    (tmp / "secret.txt").write_text(SECRET)  # a file next to the runs dir: it must never be served
    s = start_service(tmp, workers=0, ui=True)
    s.secret = tmp / "secret.txt"
    yield s
    s.stop()


def _traversals(secret: Path) -> list[str]:
    rel = "../secret.txt"
    enc = "%2e%2e%2fsecret.txt"
    dbl = "%252e%252e%252fsecret.txt"
    paths = [f"/gradio_api/file={secret}", "/gradio_api/file=/etc/passwd", f"/gradio_api/file={rel}",
             "/gradio_api/file=../../../../etc/passwd", f"/gradio_api/file={enc}", f"/gradio_api/file={dbl}",
             "/gradio_api/file=%2fetc%2fpasswd", f"/file={secret}", "/assets/../../../../etc/passwd",
             "/static/../../../../etc/passwd", "/ui-assets/../../secret.txt", "/ui-assets/%2e%2e/%2e%2e/secret.txt"]
    for route in ("", "/events", "/examples", "/metrics", "/metrics?format=csv"):
        for bad in ("..", "%2e%2e", "..%2fsecret.txt", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%252e%252e",
                    "..%5csecret.txt", "%2fetc%2fpasswd", ".hidden", "a" * 300):
            paths.append(f"/api/runs/{bad}{route}")
    return paths


def _raw_get(base: str, path: str) -> tuple[int, str]:
    # http.client sends the path byte for byte: a client that normalised `..` away would test nothing
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def test_no_path_reaches_a_file_outside_the_runs_dir(svc):
    served, tried = [], _traversals(svc.secret)
    for path in tried:
        status, body = _raw_get(svc.base, path)
        assert status < 500, (path, status, body[:200])
        if status < 400 or SECRET in body or "root:x:0:0" in body:
            served.append((path, status, body[:80]))
    assert served == [] and len(tried) > 50
    assert _raw_get(svc.base, "/ui-assets/plotly.min.js")[0] == 200  # the probe does reach real files


def test_a_crafted_pickle_checkpoint_is_refused_and_never_runs(svc, tmp_path):
    sentinel = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    run = svc.runs_dir / "crafted-run"
    RunStore.create(run, parse_config(tiny_vision("re")))
    (run / "checkpoints").mkdir()
    for name in ("best.safetensors", "last.safetensors"):
        (run / "checkpoints" / name).write_bytes(pickle.dumps({"state": Payload()}))
    assert not sentinel.exists()
    with httpx.Client(base_url=svc.base, timeout=30) as c:
        r = c.post("/api/explain", data={"run_id": "crafted-run", "text": "x"})
        assert r.status_code == 409 and "cannot be read" in r.json()["detail"], r.text
        assert c.get("/api/health").status_code == 200  # and the server is fine
    assert not sentinel.exists()


def _calls(path: Path) -> list[tuple[str, ast.Call]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value,
                                                                                            ast.Name):
            out.append((f"{node.func.value.id}.{node.func.attr}", node))
    return out


def test_product_code_never_unpickles():
    bad = []
    for pkg in ("rekd_core", "rekd", "service", "backend", "worker", "ui", "bench"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for name, call in _calls(path):
                if name in ("pickle.load", "pickle.loads", "torch.load") and not (
                        name == "torch.load" and any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
                                                     and k.value.value is True for k in call.keywords)):
                    bad.append(f"{path.relative_to(ROOT)}:{call.lineno} {name}")
    assert bad == [], bad
    # and the queue never accepts pickled messages
    app = (ROOT / "service" / "send.py").read_text()  # the one Celery configuration (worker and API)
    assert 'accept_content=["json"]' in app
