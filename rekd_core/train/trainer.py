"""The training loop: one loop for CLS, RE and REKD, reporting through a callback.

The engine knows nothing of queues or HTTP: whoever runs it passes `on_event` (called with
each event after it is stored in the run directory) and `should_stop` (polled every step:
truthy stops with a checkpoint and marks the run cancelled; "suspend" checkpoints and leaves
it queued, to be resumed; "preempt" stops and writes nothing, for a worker that has lost its
claim on the run).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..checks import init_mismatch, teacher_mismatch
from ..config import ExperimentConfig, config_to_dict
from ..data.features import Featurizer, Inputs, Prepared, build_featurizer
from ..data.load import load_for_config
from ..data.raw import DatasetBundle
from ..data.registry import ground_truth_kind
from ..model.models import RationaleModel, count_parameters
from ..model.runmodel import LoadedRun, build_model, load_model_weights, model_weights
from ..store.atomic import remove_partial_writes
from ..store.checkpoint import (
    decode_bytes,
    encode_bytes,
    load_checkpoint,
    load_optimizer_tensors,
    optimizer_tensors,
    save_checkpoint,
)
from ..store.runstore import RunStore, now_iso
from .evaluate import evaluate, frac_stats
from .schedule import tau_at
from .tasks import ClsTask, PartialInputTask, RekdTask, ReTask, StepOut, TeacherOutputs

log = logging.getLogger(__name__)

EventFn = Callable[[dict[str, Any]], None]


class TeacherMismatch(ValueError):
    pass


class InitMismatch(ValueError):
    """model.init_from names a run whose weights cannot start this one."""


def resolve_device(pref: str) -> torch.device:
    if pref == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(pref)


def plan_steps(cfg: ExperimentConfig, n_train: int) -> tuple[int, int]:
    """(steps per epoch, total steps). Epochs drop the last partial batch."""
    per_epoch = max(n_train // cfg.train.batch_size, 1)
    if cfg.train.max_steps is not None:
        return per_epoch, cfg.train.max_steps
    return per_epoch, max(1, math.ceil(float(cfg.train.epochs or 1) * per_epoch))


def build_optimizer(model: RationaleModel, cfg: ExperimentConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over (backbones at optim.lr, fresh heads at optim.head_lr) and, with optim.generator_lr or
    optim.selector_lr, the generator's backbone and its selector in groups of their own; fused kernels on CUDA."""
    body, heads = model.param_groups()
    o = cfg.optim
    if o.generator_lr is None and o.selector_lr is None:
        groups = [{"params": body, "lr": o.lr}, {"params": heads, "lr": o.head_lr or o.lr}]
    else:
        gen_body, gen_head = model.generator_parameters()
        mine = {id(p) for p in gen_body + gen_head}
        groups = [{"params": [p for p in body if id(p) not in mine], "lr": o.lr},
                  {"params": [p for p in heads if id(p) not in mine], "lr": o.head_lr or o.lr},
                  {"params": gen_body + gen_head, "lr": o.generator_lr or o.lr}]
        if o.selector_lr is not None:  # one group fewer otherwise, so checkpoints from before it still resume
            groups[-1]["params"] = gen_body
            groups.append({"params": gen_head, "lr": o.selector_lr})
        groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                             fused=device.type == "cuda")


def init_from_run(model: RationaleModel, cfg: ExperimentConfig, run_dir: Path, class_names: list[str]) -> None:
    """model.init_from: start the predictor (backbone + classifier) from another run's best
    checkpoint, and the generator's own backbone from that run's predictor backbone."""
    path = run_dir / "checkpoints" / "best.safetensors"
    if not path.exists():
        path = run_dir / "checkpoints" / "last.safetensors"
    if not path.exists():
        raise InitMismatch(f"model.init_from: {run_dir} holds no checkpoint")
    tensors, meta = load_checkpoint(path, device="cpu")
    why = init_mismatch(cfg, meta.get("config", {}).get("model", {}).get("student"), classes=class_names,
                        init_classes=meta.get("class_names") or [])
    if why:  # the API made the same check (its classes aside) before the run was queued
        raise InitMismatch(f"model.init_from: {run_dir.name}: {why}")
    own = model.state_dict()
    copied = {}
    for key, value in tensors.items():
        name = key.removeprefix("model.")
        if name.startswith(("predictor.", "classifier.")):
            copied[name] = value
            twin = "generator." + name.removeprefix("predictor.")
            if name.startswith("predictor.") and twin in own and not model.share_backbone:
                copied[twin] = value
    missing = [k for k in copied if k not in own or own[k].shape != copied[k].shape]
    if missing:
        raise InitMismatch(f"model.init_from: {run_dir} does not fit this model ({missing[:3]})")
    model.load_state_dict(copied, strict=False)


def train_step(task: ClsTask | ReTask, model: RationaleModel, opt: torch.optim.Optimizer, inputs: Inputs,
               y: torch.Tensor, idx: torch.Tensor, tau: float, gen: torch.Generator | None, *,
               autocast: bool, grad_clip: float | None) -> StepOut:
    """One optimisation step (the loop's hot path; bench/bench_step.py times this function).

    No host synchronisation: the returned StepOut holds device tensors, read at log steps only.
    """
    device_type = inputs.x.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
        out = task.step(model, inputs, y, idx, tau, gen)
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return out


class Trainer:
    def __init__(self, cfg: ExperimentConfig, store: RunStore, *, on_event: EventFn | None = None,
                 should_stop: Callable[[], bool | str] | None = None, bundle: DatasetBundle | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.on_event = on_event
        self.should_stop = should_stop or (lambda: False)
        self._bundle = bundle

    # --- events ---------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> dict[str, Any]:
        stored = self.store.append_event(event)
        if self.on_event is not None:
            self.on_event(stored)
        return stored

    # --- setup ----------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.device = resolve_device(cfg.train.device)
        self.autocast = cfg.train.precision == "bf16"
        torch.manual_seed(cfg.train.seed)
        d = cfg.data
        bundle = self._bundle or load_for_config(cfg)
        if bundle.modality != cfg.task:
            raise ValueError(f"data.dataset {d.dataset!r} is a {bundle.modality} dataset but task is {cfg.task!r}")
        self.bundle = bundle
        self.class_names = list(bundle.class_names)
        self.num_classes = len(self.class_names)
        self.feat: Featurizer = build_featurizer(cfg)
        # ground truth (if any) rides along for evaluation only: training never sees it
        self.train_data = self.feat.prepare(bundle.train.x, bundle.train.y, self.device)
        self.dev_data = self.feat.prepare(bundle.dev.x, bundle.dev.y, self.device, evidence=bundle.dev.evidence)
        self.test_data = self.feat.prepare(bundle.test.x, bundle.test.y, self.device, evidence=bundle.test.evidence)
        self.steps_per_epoch, self.total_steps = plan_steps(cfg, len(self.train_data))

        self.model = build_model(cfg, cfg.model.student, num_classes=self.num_classes, featurizer=self.feat,
                                 with_generator=cfg.mode != "cls").to(self.device)
        self.teacher_run: LoadedRun | None = None
        self.teacher_out: dict[str, TeacherOutputs] = {}
        if cfg.mode == "rekd":
            self.teacher_run = self._load_teacher()
            self.teacher_out = {"train": self._teacher_outputs(self.train_data, "train"),
                                "dev": self._teacher_outputs(self.dev_data, "dev")}
            self.task: ClsTask | ReTask = RekdTask(cfg, self.teacher_out["train"])
        elif cfg.mode == "re":
            self.task = ReTask(cfg)
        else:
            self.task = ClsTask(cfg)
        keep = cfg.schedule.warmup_keep
        self.full_input_task: ClsTask = ClsTask(cfg) if keep >= 1 else PartialInputTask(cfg, keep)
        if cfg.model.init_from:
            init_from_run(self.model, cfg, Path(cfg.model.init_from), self.class_names)
        if cfg.train.compile:
            backbones = [self.model.predictor]
            if self.model.with_generator and not self.model.share_backbone:
                backbones.append(self.model.generator)
            for backbone in backbones:
                backbone.encode = torch.compile(backbone.encode)  # the weights (state dict) are unchanged
        self.opt = build_optimizer(self.model, cfg, self.device)
        self.noise_gen = torch.Generator(device=self.device)
        self.noise_gen.manual_seed(cfg.train.seed + 7919)
        self.snapshot_idx = self._snapshot_indices()

    def _load_teacher(self) -> LoadedRun:
        cfg = self.cfg
        run = LoadedRun(Path(cfg.model.teacher_run or ""), which=cfg.model.teacher_checkpoint, device=self.device)
        # the API made the same check when the run was requested (the classes aside: it knows them now)
        why = teacher_mismatch(cfg, run.config, student_classes=self.class_names, teacher_classes=run.class_names)
        if why:
            raise TeacherMismatch(f"model.teacher_run: {why}")
        return run

    def _teacher_outputs(self, data: Prepared, split: str) -> TeacherOutputs:
        """Teacher outputs for a split, cached in the teacher's run directory across student runs.

        The key covers everything the values depend on: the teacher checkpoint file, the data
        split, how inputs are featurised and the precision; any change computes them afresh.
        """
        assert self.teacher_run is not None
        run = self.teacher_run
        ckpt = run.checkpoint_path
        st = ckpt.stat()
        d = self.cfg.data
        key_src = {"ckpt": [ckpt.name, st.st_size, st.st_mtime_ns, run.step], "split": split, "n": len(data),
                   "data": [d.dataset, d.dev_fraction, d.split_seed, d.max_train, d.max_eval, d.tokenizer,
                            d.max_len, d.benchmark.model_dump()], "count_special": self.cfg.loss.count_special,
                   "bf16": self.autocast, "version": 2}
        key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:20]
        path = run.run_dir / "cache" / f"teacher-{split}-{key}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        # Students distilling from one teacher in parallel compute its outputs once: the others
        # wait on the lock, then read the file.
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.exists():
                try:
                    t, _ = load_checkpoint(path, device=self.device)
                    return TeacherOutputs(run.model, t["z"], t["q"], device=self.device, autocast=self.autocast)
                except (ValueError, KeyError) as err:
                    log.warning("recomputing unreadable teacher cache %s: %s", path, err)
            chunk = 64
            order = self.feat.inference_order(data)
            batches = (self.feat.batch(data, order[i:i + chunk]) for i in range(0, len(data), chunk))
            out = TeacherOutputs.compute(run.model, batches, num_positions=self.feat.num_positions,
                                         device=self.device, autocast=self.autocast)
            unsort = torch.argsort(order)
            out.z, out.q = out.z[unsort], out.q[unsort]
            save_checkpoint(path, {"z": out.z, "q": out.q}, key_src)
        return out

    def _snapshot_indices(self) -> torch.Tensor:
        n = min(self.cfg.train.eval_examples, len(self.dev_data))
        g = torch.Generator().manual_seed(self.cfg.data.split_seed + 101)
        return torch.randperm(len(self.dev_data), generator=g)[:n].sort().values

    # --- batches ----------------------------------------------------------------------------
    def _batch_indices(self, step: int) -> torch.Tensor:
        # The permutation is a function of (seed, epoch) alone, so a resumed run needs no sampler state.
        epoch, pos = divmod(step, self.steps_per_epoch)
        if getattr(self, "_perm_epoch", None) != epoch:
            g = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(len(self.train_data), generator=g).to(self.device)
            self._perm_epoch = epoch
        bs = self.cfg.train.batch_size
        return self._perm[pos * bs:(pos + 1) * bs]

    def tau(self, step: int) -> float:
        """The Gumbel temperature at `step`: annealed over the steps after the full-input warm-up."""
        s = self.cfg.schedule
        warm = min(s.full_input_steps, self.total_steps)
        return tau_at(step - warm, total_steps=self.total_steps - warm, tau0=s.tau0, tau_final=s.tau_final,
                      update_every=s.tau_update_every)

    def p_target(self, step: int) -> float:
        """The selection target at `step`: every position, falling linearly to loss.p_target over
        schedule.sparsity_warmup_steps after the full-input steps (constant without a warm-up)."""
        s, p = self.cfg.schedule, self.cfg.loss.p_target
        if not s.sparsity_warmup_steps:
            return p
        done = min(max(step - s.full_input_steps, 0) / s.sparsity_warmup_steps, 1.0)
        return 1.0 + (p - 1.0) * done

    def _generator_from_predictor(self) -> None:
        """At the end of the full-input steps the generator's own backbone starts from the
        predictor's (it has learnt what the inputs hold; the generator has learnt nothing yet); under
        top-k selection its selector head also starts from zero."""
        m = self.model
        if not m.with_generator:
            return
        with torch.no_grad():
            if not m.share_backbone:
                for g, p in zip(m.generator.parameters(), m.predictor.parameters()):
                    g.copy_(p)
            # under top-k a random head on those features prefers some direction by chance (measured:
            # once the review's tokens, once every background patch); zero, it starts indifferent and
            # the predictor's gradient decides what to keep. Not under argmax: there a zero head keeps
            # nothing at evaluation (ties go to "drop"), and the cluttered teacher never left the empty
            # mask (measured: selection 0, 10 % accuracy at step 2,000; a random head: 30.5 %, P 0.39)
            if m.topk_fraction is not None:
                m.selector.weight.zero_()
                m.selector.bias.zero_()

    def _task_at(self, step: int) -> ClsTask | ReTask:
        if step < self.cfg.schedule.full_input_steps and self.cfg.mode != "cls":
            return self.full_input_task  # the predictor on the whole input: the generator idles
        if isinstance(self.task, ReTask):
            self.task.p_target = self.p_target(step)
        return self.task

    # --- checkpoints ------------------------------------------------------------------------
    def _meta(self, step: int, kind: str) -> dict[str, Any]:
        return {"config": config_to_dict(self.cfg), "class_names": self.class_names, "step": step,
                "tau": self.tau(max(step - 1, 0)), "kind": kind, "best": self.best, "time": now_iso()}

    def save(self, step: int, kind: str, window: dict[str, Any] | None = None) -> None:
        tensors = model_weights(self.model)
        meta = self._meta(step, kind)
        if window is not None:
            # the open log window, so the first log after a resume covers the same steps
            meta["window"] = {"n": window["n"], "samples": window["samples"], "correct": float(window["correct"]),
                              "terms": {k: float(v) for k, v in window["terms"].items()}}
            for key in ("frac", "iou"):
                if window[key]:
                    tensors[f"window.{key}"] = torch.cat(window[key])
        if kind == "last":
            opt_t, groups = optimizer_tensors(self.opt)
            tensors.update(opt_t)
            meta["optimizer_groups"] = groups
            meta["rng"] = {"torch": encode_bytes(torch.get_rng_state()),
                           "noise": encode_bytes(self.noise_gen.get_state())}
            if self.device.type == "cuda":
                meta["rng"]["cuda"] = encode_bytes(torch.cuda.get_rng_state(self.device))
        previous = self.store.checkpoints / "previous.safetensors" if kind == "last" else None
        save_checkpoint(self.store.checkpoints / f"{kind}.safetensors", tensors, meta, previous=previous)

    def _resume_point(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The newest intact resume checkpoint: `last`, else the one it replaced. A crash between
        the two renames of a save leaves only `previous`; a damaged `last` is refused on load."""
        remove_partial_writes(self.store.checkpoints)
        found = [p for p in (self.store.checkpoints / "last.safetensors",
                             self.store.checkpoints / "previous.safetensors") if p.exists()]
        errors = []
        for path in found:
            try:
                return load_checkpoint(path, device=self.device)
            except ValueError as err:
                log.error("%s", err)
                errors.append(str(err))
        if errors:
            raise RuntimeError("no intact checkpoint to resume from: " + "; ".join(errors))
        return None

    def _resume(self) -> int:
        point = self._resume_point()
        if point is None:
            return 0
        tensors, meta = point
        load_model_weights(self.model, tensors)
        load_optimizer_tensors(self.opt, tensors, meta["optimizer_groups"])
        torch.set_rng_state(decode_bytes(meta["rng"]["torch"]))
        self.noise_gen.set_state(decode_bytes(meta["rng"]["noise"]))
        if "cuda" in meta["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(decode_bytes(meta["rng"]["cuda"]), self.device)
        self.best = meta.get("best") or self.best
        self._restored_window = None
        if "window" in meta:
            w = meta["window"]
            self._restored_window = {
                "n": w["n"], "samples": w["samples"], "correct": torch.tensor(w["correct"], device=self.device),
                "terms": {k: torch.tensor(v, device=self.device) for k, v in w["terms"].items()},
                "frac": [tensors["window.frac"]] if "window.frac" in tensors else [],
                "iou": [tensors["window.iou"]] if "window.iou" in tensors else []}
        step = int(meta["step"])
        self.store.truncate_events_after(step)
        log.info("resumed %s at step %d", self.store.run_id, step)
        return step

    # --- evaluation ---------------------------------------------------------------------------
    def evaluate(self, data: Prepared, *, teacher: TeacherOutputs | None = None,
                 rows: torch.Tensor | None = None, faithfulness: bool = True,
                 teacher_faithfulness: bool = False,
                 rationale: bool = True) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The student on `data` (evaluate.py), its probe seeded by the run's seed."""
        metrics, cat = evaluate(self.model, self.feat, data, num_classes=self.num_classes, autocast=self.autocast,
                                teacher=teacher, rows=rows, faithfulness=faithfulness,
                                teacher_faithfulness=teacher_faithfulness, rationale=rationale,
                                probe_seed=self.cfg.train.seed)
        if "plausibility" in metrics:
            metrics["plausibility"]["ground_truth"] = ground_truth_kind(self.bundle.name)
        return metrics, cat

    def _teacher(self, split: str) -> TeacherOutputs | None:
        return self.teacher_out.get(split) if self.teacher_run is not None else None

    def _snapshot(self, step: int, tau: float) -> None:
        """Rationales of the fixed dev subset at this step, teacher beside student, for the UI."""
        if not len(self.snapshot_idx):
            return
        from ..store.examples import write_snapshot

        _, out = self.evaluate(self.dev_data, teacher=self._teacher("dev"), rows=self.snapshot_idx,
                               teacher_faithfulness=True, rationale=False)
        write_snapshot(self.store, step=step, tau=tau, out=out, y=self.dev_data.y[self.snapshot_idx.to(self.device)])

    # --- the loop -----------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        self.store.write_status(state="running", started=now_iso(), error=None)
        self._setup()
        self.best: dict[str, Any] = {"accuracy": -1.0, "step": 0}
        step = self._resume()
        resumed = step > 0
        if not resumed:
            from ..store.examples import write_inputs

            write_inputs(self.store, self.bundle, self.feat, self.snapshot_idx, self.class_names,
                         evidence=self.dev_data.evidence)
        n_params = {"student": count_parameters(self.model)}
        if self.teacher_run is not None:
            n_params["teacher"] = count_parameters(self.teacher_run.model)
        self.emit({"type": "start", "step": step, "total_steps": self.total_steps, "resumed": resumed,
                   "steps_per_epoch": self.steps_per_epoch, "params": n_params, "device": str(self.device),
                   "n_train": len(self.train_data), "n_dev": len(self.dev_data), "n_test": len(self.test_data),
                   "mode": cfg.mode, "class_names": self.class_names})
        self.store.write_status(state="running", step=step, total_steps=self.total_steps)

        model = self.model
        model.train()
        win: dict[str, Any] = getattr(self, "_restored_window", None) or self._new_window()
        t_win = t_status = time.perf_counter()
        while step < self.total_steps:
            stop = self.should_stop()
            if stop == "preempt":
                # someone else owns the run now (e.g. a lost lease): leave every file to them
                return {"state": "preempted", "step": step}
            if stop == "suspend":
                # the process is shutting down: checkpoint and hand the run back, unfinished
                self.save(step, "last", window=win)
                self.emit({"type": "checkpoint", "step": step, "kind": "last"})
                self.store.write_status(state="queued", step=step)
                return {"state": "suspended", "step": step}
            if stop:
                self.save(step, "last", window=win)
                self.emit({"type": "checkpoint", "step": step, "kind": "last"})
                return self._finish("cancelled", step)
            if step == cfg.schedule.full_input_steps > 0 and cfg.mode != "cls":
                self._generator_from_predictor()
            tau = self.tau(step)
            idx = self._batch_indices(step)
            inputs = self.feat.batch(self.train_data, idx)
            y = self.train_data.y[idx]
            out = train_step(self._task_at(step), model, self.opt, inputs, y, idx, tau, self.noise_gen,
                             autocast=self.autocast, grad_clip=cfg.optim.grad_clip)
            step += 1
            self._accumulate(win, out, y, inputs.selectable)

            last = step == self.total_steps
            if step % cfg.train.log_every == 0 or last:
                dt = time.perf_counter() - t_win
                self.emit(self._log_event(win, step, tau, dt))
                win = self._new_window()
                t_win = time.perf_counter()
                if t_win - t_status > 1.0:  # progress for run lists, at most once a second
                    self.store.write_status(step=step, tau=tau)
                    t_status = t_win
            if step % cfg.train.eval_every == 0 or last:
                self._eval_event(step, tau)
            if step % cfg.train.checkpoint_every == 0 or last:
                self.save(step, "last", window=win)
                self.emit({"type": "checkpoint", "step": step, "kind": "last"})
                self.store.write_status(step=step, tau=tau, best_dev=self.best)
        return self._finish("completed", step)

    def _new_window(self) -> dict[str, Any]:
        return {"n": 0, "correct": 0, "terms": {}, "frac": [], "iou": [], "samples": 0}

    def _accumulate(self, win: dict[str, Any], out: StepOut, y: torch.Tensor, valid: torch.Tensor) -> None:
        # tensors only: summed on the device, read on the host at the log step
        win["n"] += 1
        win["samples"] += int(y.shape[0])
        win["correct"] = win["correct"] + (out.logits.argmax(-1) == y).sum()
        for k, v in out.terms.items():
            win["terms"][k] = win["terms"].get(k, 0.0) + v.detach().float()
        if out.mask is not None:
            win["frac"].append((out.mask * valid).sum(1) / valid.sum(1).clamp_min(1))
        if "iou" in out.extra:
            win["iou"].append(out.extra["iou"])

    def _log_event(self, win: dict[str, Any], step: int, tau: float, dt: float) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "type": "log", "step": step, "epoch": step / self.steps_per_epoch, "tau": tau,
            "lr": self.opt.param_groups[0]["lr"],
            "loss": {k: float(v) / win["n"] for k, v in win["terms"].items()},
            "train_acc": float(win["correct"]) / max(win["samples"], 1),
            "samples_per_s": win["samples"] / max(dt, 1e-9),
        }
        if win["frac"]:
            ev["selected"] = frac_stats(torch.cat(win["frac"]))
        if win["iou"]:
            ev["iou"] = float(torch.cat(win["iou"]).mean())
        return ev

    def _eval_event(self, step: int, tau: float) -> None:
        metrics, _ = self.evaluate(self.dev_data, teacher=self._teacher("dev"))
        self.emit({"type": "eval", "split": "dev", "step": step, "tau": tau, **metrics})
        self._snapshot(step, tau)
        # the full-input steps train no generator: their masks are not a rationale to keep
        warming = self.cfg.mode != "cls" and step <= self.cfg.schedule.full_input_steps
        if metrics["accuracy"] > self.best["accuracy"] and not warming:
            self.best = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "step": step}
            self.save(step, "best")
            self.emit({"type": "checkpoint", "step": step, "kind": "best", "accuracy": metrics["accuracy"]})

    def _finish(self, state: str, step: int) -> dict[str, Any]:
        results: dict[str, Any] = {"state": state, "step": step, "total_steps": self.total_steps,
                                   "best_dev": self.best}
        if state == "completed":
            best = self.store.checkpoints / "best.safetensors"
            if best.exists():
                tensors, _ = load_checkpoint(best, device=self.device)
                load_model_weights(self.model, tensors)
            if self.teacher_run is not None:
                self.teacher_out["test"] = self._teacher_outputs(self.test_data, "test")
            # faithfulness is a dev-eval figure: the test set may be large and is scored once
            test, _ = self.evaluate(self.test_data, teacher=self._teacher("test"), faithfulness=False)
            results["test"] = test
            self.emit({"type": "test", "split": "test", "step": step, "checkpoint_step": self.best["step"], **test})
            self.store.write_results(results)
        # status first: a reader woken by the finished event finds the final state on disk
        self.store.write_status(state=state, step=step, finished=now_iso(), best_dev=self.best,
                                test=results.get("test"))
        self.emit({"type": "finished", "step": step, "state": state})
        return results


def train(cfg: ExperimentConfig, run_dir: str | Path, *, on_event: EventFn | None = None,
          should_stop: Callable[[], bool | str] | None = None) -> dict[str, Any]:
    """Train (or resume) the run in `run_dir`; returns its results."""
    store = RunStore.create(run_dir, cfg)
    stored = store.config()
    if stored != cfg:
        raise ValueError(f"{run_dir} holds a run with another config; resume it with that config "
                         "or start a new run directory")
    done = store.results()
    if done is not None and done.get("state") == "completed":
        return done  # idempotent: a finished run is not trained (or evaluated) again
    trainer = Trainer(cfg, store, on_event=on_event, should_stop=should_stop)
    try:
        return trainer.fit()
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"
        store.write_status(state="failed", error=reason, finished=now_iso())
        step = store.status().get("step", 0)
        trainer.emit({"type": "error", "step": step, "message": reason})
        trainer.emit({"type": "finished", "step": step, "state": "failed", "error": reason})
        raise
