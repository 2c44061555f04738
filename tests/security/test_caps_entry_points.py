"""Every entry point is capped, every error quotes the request only in a short excerpt, and a text
that is not text is refused, against a real uvicorn server with the UI mounted (as `rekd up`).

- Gradio's own upload route (`/gradio_api/upload`) refuses a body over REKD_MAX_UPLOAD_BYTES with
  413, whether it declares its length or not, and leaves nothing in Gradio's temp folder; Gradio
  is told the limit (its upload widgets refuse a larger file before sending it).
- A 422, the API's or Gradio's, never quotes more than ~200 characters of what was sent.
- A text field over Starlette's 1 MB part limit but within the body cap is the documented 422
  naming the field (not the multipart parser's 400), as multipart and as a urlencoded form.
- Invalid UTF-8 in a form field is a 422 naming the field and the byte offset (Starlette would
  decode it as Latin-1); control characters become spaces (offsets kept); a text with nothing
  left to explain is a 422.
"""

from __future__ import annotations

import re

import httpx
import pytest

from conftest import tiny_text
from rekd_core.config import parse_config
from tests.support.service import start_service

CAP = 2_000_000  # REKD_MAX_UPLOAD_BYTES here: over Starlette's 1 MB per-field limit, so that limit shows


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    from rekd_core.train.trainer import train

    tmp = tmp_path_factory.mktemp("caps")
    runs = tmp / "runs"
    cfg = tiny_text("re", max_steps=2, eval_every=2, checkpoint_every=2, eval_examples=2)
    cfg["data"].update(max_train=32, max_eval=8)
    train(parse_config(cfg), runs / "text-run")
    s = start_service(tmp, workers=0, ui=True, runs_dir=runs, REKD_MAX_UPLOAD_BYTES=str(CAP),
                      GRADIO_TEMP_DIR=str(tmp / "gradio-tmp"))
    s.gradio_tmp = tmp / "gradio-tmp"
    yield s
    s.stop()


def _longest_run(body: str, char: str) -> int:
    return max((len(m) for m in re.findall(f"{re.escape(char)}+", body)), default=0)


# --- class 3: entry points without caps ----------------------------------------------------------
def test_gradio_upload_route_is_capped(svc):
    def spooled() -> list[int]:
        return [p.stat().st_size for p in svc.gradio_tmp.rglob("*") if p.is_file()]

    with httpx.Client(base_url=svc.base, timeout=60) as c:
        small = c.post("/gradio_api/upload", files={"files": ("small.bin", b"s" * 1000)})
        assert small.status_code == 200, small.text  # the probe reaches the route
        big = c.post("/gradio_api/upload", files={"files": ("big.bin", b"b" * (CAP + 1))})
        assert big.status_code == 413, (big.status_code, big.text[:200])
        assert f"at most {CAP} bytes" in big.text

        def chunks():  # no Content-Length: the bytes are counted as they arrive
            yield (b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="chunked.bin"\r\n'
                   b"Content-Type: application/octet-stream\r\n\r\n")
            for _ in range(CAP // 65536 + 4):
                yield b"c" * 65536
            yield b"\r\n--xyz--\r\n"

        chunked = c.post("/gradio_api/upload", content=chunks(),
                         headers={"content-type": "multipart/form-data; boundary=xyz"})
        assert chunked.status_code == 413, (chunked.status_code, chunked.text[:200])
        assert c.get("/config").json()["max_file_size"] == CAP  # the upload widgets know the limit
    assert all(size <= CAP for size in spooled()), spooled()


BIG = "y" * 900_000  # under Starlette's 1 MB per-field limit: what a 422 could echo whole

ECHO_CASES = {
    "explain-form-literal": ("/api/explain", {"data": {"run_id": "text-run", "text": "fine", "checkpoint": BIG}}),
    "explain-multipart-literal": ("/api/explain", {"files": {"checkpoint": (None, BIG), "run_id": (None, "text-run"),
                                                             "text": (None, "ok")}}),
    "config-literal": ("/api/runs", {"json": {"config": {"train": {"device": BIG}}}}),
    "config-unknown-key": ("/api/runs", {"json": {"config": {"train": {BIG: 1}}}}),
    "body-shape": ("/api/runs", {"json": {"config": [BIG] * 2}}),
    "gradio-queue": ("/gradio_api/queue/join", {"json": {"data": [], "fn_index": BIG, "session_hash": BIG}}),
}


@pytest.mark.parametrize("case", list(ECHO_CASES))
def test_a_422_quotes_only_a_short_excerpt(svc, case):
    path, kw = ECHO_CASES[case]
    with httpx.Client(base_url=svc.base, timeout=60) as c:
        r = c.post(path, **kw)
    assert r.status_code == 422, (r.status_code, r.text[:300])
    assert _longest_run(r.text, "y") <= 200 and len(r.text) < 8000, (len(r.text), r.text[:300])


@pytest.mark.parametrize("field", ["text", "rationale"])
def test_a_text_field_over_the_parser_limit_is_a_422_naming_it(svc, field):
    huge = "word " * 240_000  # 1.2 MB: over Starlette's 1 MB per-field limit, within the body cap
    form = {"run_id": "text-run", "text": "a fine film", field: huge}
    with httpx.Client(base_url=svc.base, timeout=60) as c:
        multipart = c.post("/api/explain", files={k: (None, v) for k, v in form.items()})
        urlencoded = c.post("/api/explain", data=form)
    for r in (multipart, urlencoded):
        assert r.status_code == 422, (r.status_code, r.text[:200])
        assert r.json()["detail"].startswith(f"{field} too long"), r.text[:200]


# --- class 4: text that is not text --------------------------------------------------------------
def test_invalid_utf8_is_a_422_naming_the_field_and_byte(svc):
    with httpx.Client(base_url=svc.base, timeout=60) as c:
        multipart = c.post("/api/explain", files={"run_id": (None, b"text-run"), "text": (None, b"good \xff film")})
        urlencoded = c.post("/api/explain", content=b"run_id=text-run&text=good%20film%C3",
                            headers={"content-type": "application/x-www-form-urlencoded"})
        raw = c.post("/api/explain", content=b"run_id=text-run&text=ok&rationale=\xe9t\xe9",
                     headers={"content-type": "application/x-www-form-urlencoded"})
        fine = c.post("/api/explain", data={"run_id": "text-run", "text": "un été très réussi"})
    for r, field, byte in ((multipart, "text", 5), (urlencoded, "text", 9), (raw, "rationale", 0)):
        assert r.status_code == 422, (r.status_code, r.text[:200])
        detail = r.json()["detail"]
        assert detail.startswith(f"{field} is not valid UTF-8: byte {byte} "), detail
    assert fine.status_code == 200, fine.text[:200]  # real UTF-8 (non-ASCII included) is text
    seen = "".join("un été très réussi"[a:b] for a, b in (p["span"] for p in fine.json()["positions"]))
    assert "été" in seen and "Ã" not in seen, seen


def test_control_characters_become_spaces_and_an_empty_text_is_422(svc):
    text = "a\x00fine\x1bfilm\x7f,\ttruly\u0085great"
    with httpx.Client(base_url=svc.base, timeout=60) as c:
        ok = c.post("/api/explain", data={"run_id": "text-run", "text": text})
        assert ok.status_code == 200, ok.text[:200]
        out = ok.json()
        assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", out["masked_input"])
        clean = re.sub(r"[\x00\x1b\x7f\x85]", " ", text)  # the rule: same length, so the spans index the text sent
        for p in out["positions"]:
            a, b = p["span"]
            if p["selectable"] and p["token"].isalpha():
                assert clean[a:b].lower() == p["token"], (p, clean[a:b])
        for nothing, why in (("\x00" * 50, "nothing to explain"), ("\x00 \x01\n\x02", "nothing to explain"),
                             ("\u200b\ufeff", "nothing to explain"), (" \n ", "the text is empty")):
            r = c.post("/api/explain", data={"run_id": "text-run", "text": nothing})
            assert r.status_code == 422 and why in r.json()["detail"], (repr(nothing), r.status_code, r.text[:200])
