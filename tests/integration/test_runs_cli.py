"""`rekd runs` against a real service (redis-server, a Celery worker, uvicorn), run as a subprocess.

The service has an API token (REKD_API_TOKEN), so the token paths are real too; each training step
waits REKD_STEP_DELAY_S first, so a run is live long enough to watch, cancel, or have its stream cut
by a proxy in between.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from conftest import tiny_vision
from rekd.runs_cli import parse_sse
from tests.support.service import ROOT, launch_run, start_service

TOKEN = "cli-s3cret"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    s = start_service(tmp_path_factory.mktemp("runs-cli"), workers=1, step_delay_s=0.05, REKD_API_TOKEN=TOKEN)
    yield s
    s.stop()


@pytest.fixture()
def api(svc):
    with httpx.Client(base_url=svc.base, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def rekd(*args: str, url: str, token: str | None = TOKEN, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("REKD_API_TOKEN", "REKD_API_URL")}
    env.update(REKD_API_URL=url, PYTHONPATH=str(ROOT))
    if token is not None:
        env["REKD_API_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "rekd", "runs", *args], env=env, capture_output=True, text=True,
                          encoding="utf-8", timeout=timeout, cwd=ROOT)


def stored_events(svc, run_id: str) -> list[dict]:
    return [json.loads(x) for x in (svc.runs_dir / run_id / "events.jsonl").read_text().splitlines()]


def test_watch_ls_and_show_a_run(svc, api):
    cfg = tiny_vision("re", max_steps=12, log_every=2, eval_every=6, checkpoint_every=6)
    run_id = launch_run(api, cfg)
    out = rekd("watch", run_id, url=svc.base)  # live: launched a moment ago, it takes >= 12 x 0.05 s
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    steps = [int(m.group(1)) for m in (re.match(r"step (\d+)/12  τ \d+\.\d{3}  loss ce ", x) for x in lines) if m]
    assert steps == [2, 4, 6, 8, 10, 12], out.stdout
    assert all("selected " in x and "%" in x for x in lines if x.startswith("step "))
    assert sum(x.startswith("dev  step 6/12  dev acc ") or x.startswith("dev  step 12/12  dev acc ")
               for x in lines) == 2, out.stdout
    assert lines[-1] == "finished completed at step 12/12"
    assert f"run {run_id} completed: test accuracy" in out.stderr

    # a finished run is replayed from its record; --after starts later
    replay = rekd("watch", run_id, "--json", "--after", "5", url=svc.base)
    assert replay.returncode == 0, replay.stderr
    assert [json.loads(x) for x in replay.stdout.splitlines()] == stored_events(svc, run_id)[5:]

    ls = rekd("ls", url=svc.base, token=None)  # reading needs no token
    assert ls.returncode == 0, ls.stderr
    header, *rows = ls.stdout.splitlines()
    assert header.split()[:3] == ["ID", "STATE", "MODE"]
    row = next(r for r in rows if r.startswith(run_id))
    assert "completed" in row and "12/12" in row and "re vision" in row
    listed = json.loads(rekd("ls", "--json", url=svc.base).stdout)
    assert listed[0]["id"] == run_id and listed[0]["state"] == "completed"  # newest first
    assert rekd("ls", "--status", "failed", "--json", url=svc.base).stdout.strip() in ("[]",)
    bad = rekd("ls", "--status", "done", url=svc.base)
    assert bad.returncode == 2 and "completed" in bad.stderr  # the allowed values are named

    show = rekd("show", run_id[-4:], url=svc.base)  # an unambiguous part of the id will do
    assert show.returncode == 0, show.stderr
    assert show.stdout.startswith(run_id) and "completed, step 12/12 (100%)" in show.stdout
    assert re.search(r"train\.max_steps\s+12", show.stdout) and "last dev evaluation" in show.stdout
    assert re.search(r"test\s+acc \d\.\d{3}", show.stdout)
    detail = json.loads(rekd("show", "latest", "--json", url=svc.base).stdout)
    assert detail["id"] == run_id and detail["config"]["train"]["max_steps"] == 12
    assert [p["step"] for p in detail["metrics"]["log"]] == [2, 4, 6, 8, 10, 12]


class CuttingProxy:
    """A TCP proxy in front of the API that cuts the first `cuts` event streams through it, each after
    `every` whole events and a few bytes of the next (a half-sent event), after answering the first
    event request with a 503 if `refuse_first`; it records each event request's Last-Event-ID (None
    when it had none)."""

    def __init__(self, upstream: str, every: int, cuts: int, refuse_first: bool = False) -> None:
        host, port = upstream.removeprefix("http://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.every, self.cuts, self.refuse = every, cuts, refuse_first
        self.last_event_ids: list[str | None] = []
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        up = socket.create_connection(self.upstream)
        cut = threading.Event()

        def to_server() -> None:
            head = b""
            try:
                while data := client.recv(65536):
                    head += data
                    m = re.search(rb"GET /api/runs/[^ ]+/events HTTP/1\.1\r\n(.*?)\r\n\r\n", head, re.S)
                    if m:
                        lei = re.search(rb"(?im)^last-event-id: *(\S+)", m.group(1))
                        with self.lock:
                            self.last_event_ids.append(lei.group(1).decode() if lei else None)
                            if self.refuse:  # as a proxy whose upstream is restarting answers
                                self.refuse = False
                                body = b'{"detail": "upstream restarting"}'
                                client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n"
                                               b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                                               % (len(body), body))
                                up.shutdown(socket.SHUT_RDWR)  # and this connection is over
                                return
                            if self.cuts > 0:
                                self.cuts -= 1
                                cut.set()
                        head = b""
                    up.sendall(data)
            except OSError:
                pass

        threading.Thread(target=to_server, daemon=True).start()
        seen, armed_at, chunked = 0, None, False
        try:
            while data := up.recv(65536):
                chunked = chunked or b"transfer-encoding: chunked" in data.lower()
                if cut.is_set():
                    pos = 0
                    while armed_at is None and (i := data.find(b"\nid: ", pos)) >= 0:
                        seen, pos = seen + 1, i + 1
                        if seen == self.every:
                            armed_at = i
                    if armed_at is not None:
                        end = data.find(b"\n\n", armed_at if armed_at >= 0 else 0)
                        if end >= 0:  # the whole event, then part of the next one, then gone
                            half = b"event: log\ndata: {\"id\": "
                            if chunked:  # uvicorn sends each event as one chunk: the half is a chunk too
                                half = b"\r\n" + f"{len(half):x}".encode() + b"\r\n" + half
                            client.sendall(data[:end + 2] + half)
                            return
                        armed_at = -1  # the event ends in a later read
                client.sendall(data)
        except OSError:
            pass
        finally:
            for s in (client, up):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self.server.close()


def test_watch_resumes_a_cut_stream_with_last_event_id_and_shows_each_event_once(svc, api):
    cfg = tiny_vision("re", max_steps=30, log_every=1, eval_every=10, checkpoint_every=10)
    run_id = launch_run(api, cfg)
    proxy = CuttingProxy(svc.base, every=6, cuts=3, refuse_first=True)
    try:
        out = rekd("watch", run_id, "--json", url=proxy.url)
    finally:
        proxy.close()
    assert out.returncode == 0, out.stderr
    shown = [json.loads(x) for x in out.stdout.splitlines()]
    ids = [e["id"] for e in shown]
    assert ids == list(range(1, len(ids) + 1)), ids  # strictly increasing, none twice, none skipped
    assert shown == stored_events(svc, run_id)  # every event, as the run recorded it
    assert shown[-1]["type"] == "finished" and shown[-1]["state"] == "completed"
    # a 503 first (tried again), then three cuts, each after 6 more events: the client came back
    # after the last event it had shown
    assert proxy.last_event_ids == [None, None, "6", "12", "18"], proxy.last_event_ids
    assert "the API answered 503: upstream restarting" in out.stderr
    assert [int(n) for n in re.findall(r"reconnecting after event (\d+)", out.stderr)] == [0, 6, 12, 18], out.stderr


def test_cancel_and_clone_need_the_token_and_watch_reports_the_end(svc, api):
    run_id = launch_run(api, tiny_vision("re", max_steps=2000, log_every=5, eval_every=1000,
                                         checkpoint_every=1000))
    refused = rekd("cancel", run_id, url=svc.base, token=None)
    assert refused.returncode == 2 and "REKD_API_TOKEN" in refused.stderr, refused.stderr
    wrong = rekd("cancel", run_id, url=svc.base, token="nope")
    assert wrong.returncode == 2 and "refused" in wrong.stderr and "REKD_API_TOKEN" in wrong.stderr
    assert api.get(f"/api/runs/{run_id}").json()["state"] in ("queued", "running")

    done = rekd("cancel", run_id, url=svc.base)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in (f"{run_id}: cancelling", f"{run_id}: cancelled")
    ended = rekd("watch", run_id, url=svc.base)
    assert ended.returncode == 1 and f"run {run_id} cancelled" in ended.stderr, ended.stderr
    again = rekd("cancel", run_id, url=svc.base)
    assert again.returncode == 2 and "already ended (cancelled)" in again.stderr

    bad = rekd("clone", run_id, "--set", "train.max_steps=-3", url=svc.base)
    assert bad.returncode == 2 and "train.max_steps" in bad.stderr, bad.stderr
    clone = rekd("clone", run_id, "--set", "train.max_steps=4", "--set", "train.seed=7", url=svc.base)
    assert clone.returncode == 0, clone.stderr
    new_id = clone.stdout.strip()
    detail = api.get(f"/api/runs/{new_id}").json()
    assert detail["cloned_from"] == run_id
    assert detail["config"]["train"]["max_steps"] == 4 and detail["config"]["train"]["seed"] == 7
    watched = rekd("watch", new_id, "--json", url=svc.base)
    assert watched.returncode == 0, watched.stderr
    assert json.loads(watched.stdout.splitlines()[-1])["state"] == "completed"


def test_errors_are_one_line_and_exit_2(svc):
    with socket.create_server(("127.0.0.1", 0)) as s:
        free = f"http://127.0.0.1:{s.getsockname()[1]}"
    gone = rekd("ls", url=free)  # nothing listens there now
    assert gone.returncode == 2 and free in gone.stderr and "REKD_API_URL" in gone.stderr, gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1
    for cmd in ("show", "watch", "cancel", "clone"):
        missing = rekd(cmd, "no-such-run", url=svc.base)
        assert missing.returncode == 2 and "no run 'no-such-run'" in missing.stderr, (cmd, missing.stderr)
    not_url = rekd("ls", url="localhost:8000")
    assert not_url.returncode == 2 and "REKD_API_URL" in not_url.stderr


def test_the_sse_parser_keeps_whole_events_only():
    lines = ["retry: 1000", "", ": ping", "", "event: log", 'data: {"id": 1,', 'data: "type": "log"}', "id: 1", "",
             "id: 2", "event: eval", 'data:{"id": 2, "type": "eval"}', "", "event: log", 'data: {"id": 3']
    assert list(parse_sse(lines)) == [(1, {"id": 1, "type": "log"}), (2, {"id": 2, "type": "eval"})]
