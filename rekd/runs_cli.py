"""`rekd runs`: the runs of a running service, from a shell: ls, show, watch, cancel, clone.

HTTP only, against --api (default: REKD_API_URL, else http://127.0.0.1:8000), with --token
(default: REKD_API_TOKEN) sent as a Bearer token. `watch` follows GET /api/runs/{id}/events (SSE)
and, when the connection drops, reconnects with `Last-Event-ID` set to the last event it showed:
every event is shown once, in id order, none skipped. Errors talking to the API (unreachable,
token refused, no such run, a refused request) are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

import httpx

DEFAULT_API = "http://127.0.0.1:8000"
STATES = ("queued", "running", "completed", "failed", "cancelled")
# the server sends a `: ping` after 15 s without an event: a read this long without a byte is a dead connection
READ_TIMEOUT_S = 45.0
# config fields `show` lists (those a run has); `show --config` prints every field
SUMMARY_KEYS = ("task", "mode", "data.dataset", "data.max_train", "data.max_len", "model.student.kind",
                "model.teacher_run", "model.init_from", "loss.p_target", "train.max_steps", "train.batch_size",
                "train.seed", "optim.lr")


class CliError(Exception):
    """A failure talking to the API: one line for stderr, exit status 2."""


# --- the API ------------------------------------------------------------------------------------

class Api:
    """The service's HTTP API at `url`, with the token on every request (reading routes ignore it)."""

    def __init__(self, url: str, token: str | None) -> None:
        if not url.startswith(("http://", "https://")):
            raise CliError(f"the API URL must start with http:// or https:// (e.g. {DEFAULT_API}), got {url!r}: "
                           "fix --api or REKD_API_URL")
        self.url = url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def call(self, method: str, path: str, run: str | None = None, **kw: Any) -> Any:
        try:
            resp = self.client.request(method, path, **kw)
        except httpx.TransportError as err:
            raise self.unreachable(err) from None
        if resp.status_code >= 400:
            raise self.refused(resp, run)
        return resp.json() if resp.content else None

    def unreachable(self, err: Exception) -> CliError:
        why = str(err) or type(err).__name__
        return CliError(f"cannot reach the rekd API at {self.url} ({why}); start one with `rekd up`, or point "
                        "REKD_API_URL (or --api) at a running service")

    def refused(self, resp: httpx.Response, run: str | None) -> CliError:
        code = resp.status_code
        if code == 401:
            given = "the token given was refused" if self.token else "no token was given"
            return CliError(f"the API at {self.url} wants its API token ({given}): set REKD_API_TOKEN (or pass "
                            "--token) to the service's REKD_API_TOKEN")
        if code == 404 and run is not None:
            return CliError(f"no run {run!r} at {self.url} (`rekd runs ls` lists its runs)")
        return CliError(f"the API at {self.url} refused the request ({code}): {_detail(resp)}")


def _detail(resp: httpx.Response) -> str:
    """An error body's `detail`: a message, or FastAPI's field errors as `field.path: message`."""
    try:
        detail = resp.json().get("detail")
    except (ValueError, AttributeError):
        return resp.text[:300] or resp.reason_phrase
    if isinstance(detail, list):
        parts = []
        for e in detail:
            loc = [str(x) for x in e.get("loc", []) if x not in ("body", "config")]
            parts.append(f"{'.'.join(loc) or 'request'}: {e.get('msg', e)}")
        return "; ".join(parts)
    return str(detail)


def resolve(api: Api, given: str) -> str:
    """A run id from what was typed: the id itself, `latest` (the newest run), or an unambiguous part of
    an id (`ab12`, `t-vision-re`) as `rekd runs ls` shows it."""
    try:
        return str(api.call("GET", f"/api/runs/{given}", run=given)["id"])
    except CliError as err:
        if f"no run {given!r}" not in str(err) and "invalid run id" not in str(err):
            raise
    runs = api.call("GET", "/api/runs")
    if given == "latest":
        if not runs:
            raise CliError(f"no runs at {api.url} yet")
        return str(runs[0]["id"])
    hits = [r["id"] for r in runs if given in r["id"]]
    if len(hits) == 1:
        return str(hits[0])
    if hits:
        shown = ", ".join(hits[:5]) + (f" and {len(hits) - 5} more" if len(hits) > 5 else "")
        raise CliError(f"{given!r} matches {len(hits)} runs at {api.url} ({shown}): give more of the id")
    raise CliError(f"no run {given!r} at {api.url} (`rekd runs ls` lists its runs)")


# --- formatting ---------------------------------------------------------------------------------

def _num(v: Any, fmt: str = ".3f") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, (int, float)) else "-"


def _when(iso: str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An ISO time from the server in this machine's time zone."""
    if not iso:
        return "-"
    try:
        return datetime.fromisoformat(iso).astimezone().strftime(fmt)
    except ValueError:
        return iso


def _steps(step: Any, total: Any) -> str:
    return f"{step}/{total if total else '?'}"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def log_line(ev: dict[str, Any], total: Any) -> str:
    """A training log event: step, τ, the loss terms, the selected share, the training accuracy."""
    loss = " ".join(f"{k} {_num(v)}" for k, v in (ev.get("loss") or {}).items())
    parts = [f"step {_steps(ev.get('step'), total)}", f"τ {_num(ev.get('tau'))}", f"loss {loss}" if loss else ""]
    if isinstance(ev.get("selected"), dict):
        parts.append(f"selected {_pct(ev['selected'].get('mean'))}")
    parts.append(f"train acc {_num(ev.get('train_acc'))}")
    if ev.get("iou") is not None:
        parts.append(f"iou {_num(ev['iou'])}")
    return "  ".join(p for p in parts if p)


def eval_line(ev: dict[str, Any], total: Any) -> str:
    """A dev evaluation (or the test): accuracy, macro-F1, the selected share, faithfulness."""
    split = "test" if ev.get("type") == "test" else ev.get("split", "dev")
    parts = [f"{split} acc {_num(ev.get('accuracy'))}", f"macro-F1 {_num(ev.get('macro_f1'))}"]
    if isinstance(ev.get("selected"), dict):
        parts.append(f"selected {_pct(ev['selected'].get('mean'))}")
    faith = ev.get("faithfulness") or {}
    if faith:
        parts.append(f"comp {_num(faith.get('comprehensiveness'))} suff {_num(faith.get('sufficiency'))}")
    for w in ev.get("warnings") or []:
        parts.append(f"warning: {w.get('message', w) if isinstance(w, dict) else w}")
    where = (f"best dev checkpoint, step {ev['checkpoint_step']}" if ev.get("type") == "test"
             else f"step {_steps(ev.get('step'), total)}")
    return f"{split:<4} {where}  " + "  ".join(parts)


# --- following the event stream -----------------------------------------------------------------

def parse_sse(lines: Iterable[str]) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """(id, data) of each event in an SSE line stream (comments, `retry` and data-less blocks skipped)."""
    fields: dict[str, list[str]] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                sid = fields.get("id", [""])[-1]
                yield (int(sid) if sid.isdigit() else None), json.loads("\n".join(fields["data"]))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)


def follow(api: Api, run_id: str, show: Callable[[dict[str, Any]], None], last: int = 0, retries: int = 8,
           backoff_s: float = 0.5, on_retry: Callable[[str, int, float], None] | None = None) -> dict[str, Any]:
    """Show each event of the run with id > `last` once, in order, until its `finished` event (returned).

    A dropped connection, a stream that ends early, a 5xx or an id out of order: reconnect with Last-Event-ID
    of the last event shown, after `backoff_s` doubling to 10 s; give up after `retries` tries in a row
    without a new event."""
    failures = 0
    while True:
        headers = {"Last-Event-ID": str(last)} if last else {}
        try:
            with api.client.stream("GET", f"/api/runs/{run_id}/events", headers=headers,
                                   timeout=httpx.Timeout(30, read=READ_TIMEOUT_S)) as resp:
                if resp.status_code != 200:
                    resp.read()
                    if resp.status_code >= 500:  # an API restarting, a proxy without its upstream: try again
                        raise _Retry(f"the API answered {resp.status_code}: {_detail(resp)}")
                    raise api.refused(resp, run_id)
                for sid, ev in parse_sse(resp.iter_lines()):
                    eid = sid if sid is not None else int(ev["id"])
                    if eid <= last:
                        continue  # shown already
                    if eid != last + 1:
                        raise _Retry(f"event {eid} came after {last}")
                    last = eid
                    failures = 0
                    show(ev)
                    if ev.get("type") == "finished":
                        return ev
            why = "the stream ended before the run finished"
        except (httpx.TransportError, _Retry) as err:
            why = str(err) or type(err).__name__
            if isinstance(err, httpx.ConnectError) and failures >= retries:
                raise api.unreachable(err) from None
        failures += 1
        if failures > retries:
            raise CliError(f"lost the event stream of run {run_id} at {api.url} after event {last} and "
                           f"{retries} tries to reconnect ({why}); `rekd runs watch {run_id}` follows it again")
        delay = min(backoff_s * 2 ** (failures - 1), 10.0)
        if on_retry:
            on_retry(why, last, delay)
        time.sleep(delay)


class _Retry(Exception):
    """Reconnect: an event out of order, or an answer that may be better next time (5xx)."""


class Watcher:
    """How `watch` shows the events: JSON lines (--json), a tqdm bar (a terminal) or plain lines."""

    def __init__(self, run_id: str, detail: dict[str, Any], style: str) -> None:
        self.run_id, self.style = run_id, style
        self.total = detail.get("total_steps")
        self.error: str | None = detail.get("error")
        self.postfix: dict[str, str] = {}
        self.bar: Any = None
        if style == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=0, unit="step", file=sys.stderr, dynamic_ncols=True,
                            leave=True)
            self.say(f"watching {run_id} ({detail.get('mode')} {detail.get('task')}, {detail['state']})")

    def say(self, line: str) -> None:
        if self.style == "json":
            print(f"rekd: {line}", file=sys.stderr, flush=True)
        elif self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, flush=True)

    def show(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if self.style == "json":
            print(json.dumps(ev), flush=True)
        if kind == "start" and ev.get("total_steps"):
            self.total = ev["total_steps"]
            if self.bar is not None:
                self.bar.reset(total=self.total)
                self.bar.update(ev.get("step", 0))
        if kind in ("error", "finished") and (ev.get("message") or ev.get("error")):
            self.error = ev.get("error") or ev.get("message")
        if self.style == "json":
            return
        if self.bar is not None:
            self._bar(ev)
        else:
            self._line(ev)

    def _line(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "start":
            again = f", resumed at step {ev.get('step')}" if ev.get("resumed") else ""
            self.say(f"start {self.run_id}: {ev.get('mode', '')} on {ev.get('device', '?')}, "
                     f"{self.total} steps{again}")
        elif kind == "log":
            self.say(log_line(ev, self.total))
        elif kind in ("eval", "test"):
            self.say(eval_line(ev, self.total))
        elif kind == "error":
            self.say(f"error at step {ev.get('step')}: {ev.get('message')}")
        elif kind == "finished":
            self.say(f"finished {ev.get('state')} at step {_steps(ev.get('step'), self.total)}")

    def _bar(self, ev: dict[str, Any]) -> None:
        kind, bar = ev.get("type"), self.bar
        if isinstance(ev.get("step"), int) and ev["step"] > bar.n:
            bar.update(ev["step"] - bar.n)
        if kind == "log":
            self.postfix["τ"] = _num(ev.get("tau"))
            self.postfix.update({k: _num(v) for k, v in (ev.get("loss") or {}).items()})
            if isinstance(ev.get("selected"), dict):
                self.postfix["sel"] = _pct(ev["selected"].get("mean"))
        elif kind == "eval":
            self.postfix["dev"] = _num(ev.get("accuracy"))
            bar.write(eval_line(ev, self.total), file=sys.stderr)
        elif kind == "test":
            bar.write(eval_line(ev, self.total), file=sys.stderr)
        elif kind == "error":
            bar.write(f"error at step {ev.get('step')}: {ev.get('message')}", file=sys.stderr)
        elif kind == "start" and ev.get("resumed"):
            bar.write(f"resumed at step {ev.get('step')}", file=sys.stderr)
        bar.set_postfix_str("  ".join(f"{k} {v}" for k, v in self.postfix.items()), refresh=False)
        if time.time() - bar.last_print_t >= bar.mininterval:  # a replay of thousands of events: not each drawn
            bar.refresh()

    def retry(self, why: str, last: int, delay: float) -> None:
        self.say(f"connection lost ({why}); reconnecting after event {last} in {delay:.1f} s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- the commands -------------------------------------------------------------------------------

def _api(args: argparse.Namespace) -> Api:
    return Api(args.api or os.environ.get("REKD_API_URL") or DEFAULT_API,
               args.token if args.token is not None else os.environ.get("REKD_API_TOKEN") or None)


def cmd_ls(args: argparse.Namespace) -> int:
    api = _api(args)
    runs = api.call("GET", "/api/runs")  # newest first
    if args.status:
        runs = [r for r in runs if r["state"] in args.status]
    shown = runs[:args.limit] if args.limit else runs
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    if not shown:
        print(f"no runs{' ' + '/'.join(args.status) if args.status else ''} at {api.url}", file=sys.stderr)
        return 0
    rows = [[r["id"], r["state"], " ".join(filter(None, [r.get("mode"), r.get("task")])) or "-",
             r.get("name") or "-", _steps(r.get("step", 0), r.get("total_steps")),
             _num(r.get("best_dev_accuracy")), _num(r.get("test_accuracy")), _when(r.get("created"))]
            for r in shown]
    print(table(rows, ["ID", "STATE", "MODE", "NAME", "STEP", "DEV ACC", "TEST ACC", "CREATED"]))
    if len(runs) > len(shown):
        print(f"({len(runs) - len(shown)} older runs not shown: --limit 0 shows all)", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    api = _api(args)
    run_id = resolve(api, args.run)
    d = api.call("GET", f"/api/runs/{run_id}", run=run_id)
    metrics = api.call("GET", f"/api/runs/{run_id}/metrics", run=run_id)
    if args.json:
        print(json.dumps({**d, "metrics": metrics}, indent=2))
        return 0
    out = [f"{run_id}  {d.get('name') or ''}".rstrip()]
    progress = f"step {_steps(d.get('step'), d.get('total_steps'))} ({100 * d.get('progress', 0):.0f}%)"
    out.append(f"  state       {d['state']}, {progress}, attempts {d.get('attempts', 0)}"
               + (f", τ {_num(d['tau'])}" if d.get("tau") is not None else ""))
    out.append(f"  created     {_when(d.get('created'), '%Y-%m-%d %H:%M:%S')}   started "
               f"{_when(d.get('started'), '%H:%M:%S')}   finished {_when(d.get('finished'), '%H:%M:%S')}")
    for key, label in (("waiting_for", "waiting for"), ("cloned_from", "cloned from"), ("error", "error")):
        if d.get(key):
            out.append(f"  {label:<11} {d[key]}")
    flat = flatten(d.get("config") or {})
    keys = list(flat) if args.config else [k for k in SUMMARY_KEYS if flat.get(k) not in (None, "", [])
                                           and (k != "data.max_len" or flat.get("task") == "text")]
    out.append("config" + ("" if args.config else " (show --config lists every field)"))
    width = max((len(k) for k in keys), default=0)
    out += [f"  {k:<{width}}  {json.dumps(flat[k]) if not isinstance(flat[k], str) else flat[k]}" for k in keys]
    if metrics["log"]:
        last = metrics["log"][-1]
        loss = {k.removeprefix("loss_"): v for k, v in last.items() if k.startswith("loss_") and v is not None}
        out.append("last log")
        out.append("  " + log_line({"step": last["step"], "tau": last.get("tau"), "loss": loss,
                                    "selected": {"mean": last.get("selected_mean")}
                                    if last.get("selected_mean") is not None else None,
                                    "train_acc": last.get("train_acc"), "iou": last.get("iou")},
                                   d.get("total_steps")))
    if metrics["eval"]:
        last = metrics["eval"][-1]
        out.append("last dev evaluation")
        out.append("  " + eval_line({"type": "eval", "split": "dev", "step": last["step"],
                                     "accuracy": last.get("accuracy"), "macro_f1": last.get("macro_f1"),
                                     "selected": {"mean": last.get("selected_mean")},
                                     "faithfulness": {"comprehensiveness": last.get("faithfulness_comprehensiveness"),
                                                      "sufficiency": last.get("faithfulness_sufficiency")}},
                                    d.get("total_steps")))
    res = d.get("results") or {}
    if res:
        best = res.get("best_dev") or {}
        out.append("results")
        if best.get("step") is not None:
            out.append(f"  best dev    acc {_num(best.get('accuracy'))}  macro-F1 {_num(best.get('macro_f1'))}  "
                       f"at step {best.get('step')}")
        if res.get("test"):
            t = res["test"]
            sel = f"  selected {_pct((t.get('selected') or {}).get('mean'))}" if t.get("selected") else ""
            out.append(f"  test        acc {_num(t.get('accuracy'))}  macro-F1 {_num(t.get('macro_f1'))}{sel}")
    for w in d.get("warnings") or []:
        out.append(f"warning: {w.get('message', w) if isinstance(w, dict) else w}")
    print("\n".join(out))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    api = _api(args)
    run_id = resolve(api, args.run)
    detail = api.call("GET", f"/api/runs/{run_id}", run=run_id)
    style = "json" if args.json else "bar" if _terminal_width() > 0 and not args.no_bar else "lines"
    view = Watcher(run_id, detail, style)
    if detail["state"] == "queued":
        view.say(f"{run_id} is queued" + (f", waiting for teacher run {detail['waiting_for']}"
                                          if detail.get("waiting_for") else "") + "; waiting for it to start")
    try:
        end = follow(api, run_id, view.show, last=args.after, retries=args.retries, on_retry=view.retry)
    except KeyboardInterrupt:
        print(f"\nrekd: stopped watching {run_id}; the run goes on (`rekd runs cancel {run_id}` stops it)",
              file=sys.stderr)
        return 130
    finally:
        view.close()
    state = end.get("state")
    if state == "completed":
        final = api.call("GET", f"/api/runs/{run_id}", run=run_id)
        test = final.get("test_accuracy")
        print(f"rekd: run {run_id} completed" + (f": test accuracy {_num(test)}" if test is not None else ""),
              file=sys.stderr)
        return 0
    why = f": {view.error}" if view.error else ""
    print(f"rekd: run {run_id} {state} at step {end.get('step')}{why}", file=sys.stderr)
    return 1


def _terminal_width() -> int:
    """stderr's width in columns when it is a terminal (a bar needs one), else 0."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns if sys.stderr.isatty() else 0
    except (OSError, ValueError):
        return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    api = _api(args)
    run_id = resolve(api, args.run)
    out = api.call("POST", f"/api/runs/{run_id}/cancel", run=run_id)
    print(f"{run_id}: {out['state']}")
    return 0


def cmd_clone(args: argparse.Namespace) -> int:
    for s in args.set:
        if "=" not in s:
            raise CliError(f"--set takes KEY=VALUE (e.g. --set optim.lr=3e-4), got {s!r}")
    api = _api(args)
    run_id = resolve(api, args.run)
    out = api.call("POST", f"/api/runs/{run_id}/clone", run=run_id, json={"overrides": args.set})
    edits = f" with {', '.join(args.set)}" if args.set else ""
    print(json.dumps(out) if args.json else out["id"], flush=True)
    print(f"rekd: queued {out['id']}, a clone of {run_id}{edits} (follow it: rekd runs watch {out['id']})",
          file=sys.stderr)
    if args.watch:
        args.run, args.after = out["id"], 0
        return cmd_watch(args)
    return 0


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except CliError as err:
            print(f"rekd: {err}", file=sys.stderr)
            return 2

    return run


def add_parser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api", metavar="URL", help=f"the service's URL (default: REKD_API_URL, else {DEFAULT_API})")
    common.add_argument("--token", help="the service's API token (default: REKD_API_TOKEN; the environment "
                                        "variable keeps it out of the process list)")
    p = sub.add_parser("runs", help="list, show, watch, cancel or clone the runs of a running service",
                       description="The runs of a running service (rekd up), over its HTTP API.")
    rs = p.add_subparsers(dest="runs_command", required=True, metavar="{ls,show,watch,cancel,clone}")

    ls = rs.add_parser("ls", parents=[common], help="a table of the runs, newest first")
    ls.add_argument("--status", action="append", choices=STATES, help="only runs in this state (repeatable)")
    ls.add_argument("--limit", type=_non_negative, default=20, help="at most this many runs (default 20; 0: all)")
    ls.add_argument("--json", action="store_true", help="the runs as JSON (the API's run summaries)")
    ls.set_defaults(func=_guarded(cmd_ls))

    run_help = "a run id, an unambiguous part of one, or `latest`"
    show = rs.add_parser("show", parents=[common], help="a run's config, state, last metrics and results")
    show.add_argument("run", help=run_help)
    show.add_argument("--config", action="store_true", help="every config field, not only the main ones")
    show.add_argument("--json", action="store_true", help="the API's run detail and metrics as JSON")
    show.set_defaults(func=_guarded(cmd_show))

    watch = rs.add_parser("watch", parents=[common], help="follow a run live until it ends (exit 0 if it "
                          "completed, 1 if it failed or was cancelled)")
    watch.add_argument("run", help=run_help)
    _watch_options(watch)
    watch.add_argument("--after", type=_non_negative, default=0, metavar="ID",
                       help="start after this event id (default 0: replay the run from its start)")
    watch.set_defaults(func=_guarded(cmd_watch))

    cancel = rs.add_parser("cancel", parents=[common], help="cancel a queued or running run")
    cancel.add_argument("run", help=run_help)
    cancel.set_defaults(func=_guarded(cmd_cancel))

    clone = rs.add_parser("clone", parents=[common], help="queue a new run with a run's config, edited by --set; "
                          "prints the new run's id")
    clone.add_argument("run", help=run_help)
    clone.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="change a config field, e.g. --set optim.lr=3e-4 (repeatable)")
    clone.add_argument("--watch", action="store_true", help="then follow the new run as `watch` does")
    _watch_options(clone)
    clone.set_defaults(func=_guarded(cmd_clone))


def _watch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON line per event on stdout (the stream's data); "
                   "clone prints its answer as a JSON line first")
    p.add_argument("--no-bar", action="store_true", help="plain lines even on a terminal")
    p.add_argument("--retries", type=_non_negative, default=8,
                   help="reconnections in a row without a new event before giving up (default 8)")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value
