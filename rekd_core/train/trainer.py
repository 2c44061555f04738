"""The training loop: one loop for CLS, RE and REKD, reporting through a callback.

The engine knows nothing of queues or HTTP: whoever runs it passes `on_event` (called with
each event after it is stored in the run directory) and `should_stop` (polled every step:
truthy stops with a checkpoint and marks the run cancelled; "suspend" checkpoints and leaves
it queued, to be resumed; "preempt" stops and writes nothing, for a worker that has lost its
claim on the run).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import ExperimentConfig, config_to_dict
from ..data.features import Featurizer, Inputs, Prepared, build_featurizer
from ..data.load import load_for_config
from ..data.raw import DatasetBundle
from ..data.registry import ground_truth_kind
from ..model.models import RationaleModel, count_parameters
from ..model.runmodel import LoadedRun, build_model, load_model_weights
from ..store.checkpoint import load_checkpoint
from ..store.examples import write_inputs, write_snapshot
from ..store.runstore import RunStore, now_iso
from ..tracking import open_tracking
from .evaluate import evaluate
from .init_from import init_from_run
from .optim import build_optimizer
from .schedule import p_target_at, plan_steps, run_tau
from .state import LogWindow, restore_state, resume_point, save_state
from .tasks import ClsTask, PartialInputTask, RekdTask, ReTask, StepOut
from .teacher import TeacherOutputs, load_teacher, teacher_outputs

log = logging.getLogger(__name__)

EventFn = Callable[[dict[str, Any]], None]


def resolve_device(pref: str) -> torch.device:
    """train.device as a torch device ("auto": CUDA when there is one)."""
    if pref == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(pref)


def resolve_precision(pref: str, device: torch.device) -> bool:
    """train.precision as "autocast to bf16?": auto is bf16 on a CUDA device that has it, else fp32."""
    if pref == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return pref == "bf16"


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
    """One run: its setup (data, featurizer, model, teacher, optimizer), the loop, the evaluations
    and checkpoints the loop makes, and the events it reports."""

    best: dict[str, Any]  # the best dev evaluation so far (fit() starts it, _resume() restores it)

    def __init__(self, cfg: ExperimentConfig, store: RunStore, *, on_event: EventFn | None = None,
                 should_stop: Callable[[], bool | str] | None = None, bundle: DatasetBundle | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.on_event = on_event
        self.should_stop = should_stop or (lambda: False)
        self._bundle = bundle
        self.tracking: EventFn = lambda event: None  # train() sets the train.track mirror (rekd_core.tracking)

    # --- events ---------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> dict[str, Any]:
        stored = self.store.append_event(event)
        if self.on_event is not None:
            self.on_event(stored)
        self.tracking(stored)
        return stored

    # --- setup ----------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.device = resolve_device(cfg.train.device)
        self.autocast = resolve_precision(cfg.train.precision, self.device)
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
            self.teacher_run = load_teacher(cfg, self.class_names, self.device)
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
                # this instance's encode, compiled in place; the weights (state dict) are unchanged
                backbone.encode = torch.compile(backbone.encode)  # type: ignore[method-assign]
        self.opt = build_optimizer(self.model, cfg, self.device)
        self.noise_gen = torch.Generator(device=self.device)
        self.noise_gen.manual_seed(cfg.train.seed + 7919)
        self.snapshot_idx = self._snapshot_indices()

    def _teacher_outputs(self, data: Prepared, split: str) -> TeacherOutputs:
        assert self.teacher_run is not None
        return teacher_outputs(self.teacher_run, self.cfg, self.feat, data, split, device=self.device,
                               autocast=self.autocast)

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
        """The Gumbel temperature at `step` (schedule.run_tau)."""
        return run_tau(self.cfg.schedule, step, self.total_steps)

    def p_target(self, step: int) -> float:
        """The selection target at `step` (schedule.p_target_at)."""
        return p_target_at(self.cfg, step)

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

    def save(self, step: int, kind: str, window: LogWindow | None = None) -> None:
        save_state(self.store, kind, self.model, self._meta(step, kind), opt=self.opt, noise_gen=self.noise_gen,
                   device=self.device, window=window)

    def _resume(self) -> int:
        self._restored_window: LogWindow | None = None
        point = resume_point(self.store, self.device)
        if point is None:
            return 0
        tensors, meta = point
        self._restored_window = restore_state(tensors, meta, model=self.model, opt=self.opt,
                                              noise_gen=self.noise_gen, device=self.device)
        self.best = meta.get("best") or self.best
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
        return evaluate(self.model, self.feat, data, num_classes=self.num_classes, autocast=self.autocast,
                        teacher=teacher, rows=rows, faithfulness=faithfulness,
                        teacher_faithfulness=teacher_faithfulness, rationale=rationale,
                        probe_seed=self.cfg.train.seed, ground_truth=ground_truth_kind(self.bundle.name))

    def _teacher(self, split: str) -> TeacherOutputs | None:
        return self.teacher_out.get(split) if self.teacher_run is not None else None

    def _snapshot(self, step: int, tau: float) -> None:
        """Rationales of the fixed dev subset at this step, teacher beside student, for the UI."""
        if not len(self.snapshot_idx):
            return
        _, out = self.evaluate(self.dev_data, teacher=self._teacher("dev"), rows=self.snapshot_idx,
                               teacher_faithfulness=True, rationale=False)
        write_snapshot(self.store, step=step, tau=tau, out=out, y=self.dev_data.y[self.snapshot_idx.to(self.device)])

    # --- the loop -----------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        self.store.write_status(state="running", started=now_iso(), error=None)
        self._setup()
        self.best = {"accuracy": -1.0, "step": 0}
        step = self._resume()
        resumed = step > 0
        if not resumed:
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
        win = self._restored_window or LogWindow()
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
            win.add(out, y, inputs.selectable)

            last = step == self.total_steps
            if step % cfg.train.log_every == 0 or last:
                dt = time.perf_counter() - t_win
                self.emit({"type": "log", "step": step, "epoch": step / self.steps_per_epoch, "tau": tau,
                           "lr": self.opt.param_groups[0]["lr"], **win.figures(dt)})
                win = LogWindow()
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
    tracking = None
    try:
        trainer.tracking = tracking = open_tracking(cfg, store)  # a refused tracker fails the run, named
        return trainer.fit()
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"
        store.write_status(state="failed", error=reason, finished=now_iso())
        step = store.status().get("step", 0)
        trainer.emit({"type": "error", "step": step, "message": reason})
        trainer.emit({"type": "finished", "step": step, "state": "failed", "error": reason})
        raise
    finally:
        if tracking is not None:
            tracking.close()  # waits for the trackers to write what the run handed them
