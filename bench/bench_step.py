"""Seconds per training step, ours against a naive baseline, in one process per configuration.

    python bench/bench_step.py [--device cpu|cuda] [--steps 5] [--paper-steps 2] [--only offline|paper]

For CLS, RE and REKD at the offline presets' sizes (fmnist-teacher -> fmnist-student at 28 px,
rt-teacher-scratch -> rt-student at 64 tokens) and at the paper's sizes (ViT-Base -> ViT-Tiny at
224 px, BERT-base-like 12x768 -> BERT-Mini-like 4x256 at 256 tokens, batch 32, random init),
two paths train the same student from the same initial weights on the same batch stream:

- default: the engine's own step (rekd_core.train.trainer.train_step with the tasks of
  rekd_core.train.tasks): the frozen teacher's outputs read from the per-split cache
  (TeacherOutputs, built once and timed separately), Gumbel noise drawn on the device, fused
  AdamW on CUDA, metrics kept as device tensors and read once at the end; bf16 autocast on
  CUDA only (see --cpu-bf16).
- naive: the reference code's way, written out here with the same modules and rekd_core.model.losses:
  fp32, eager, the teacher's generator AND predictor recomputed every step under torch.no_grad,
  Gumbel noise drawn on the CPU and copied to the device, unfused AdamW, and loss / accuracy /
  selected fraction / IoU read with .item() every step.

Steps are interleaved (naive, default, naive, ...) so machine noise hits both paths alike. One
warm-up step per path is not timed. On CUDA use --blocks (all naive steps, then all default
steps): measured on an H200, interleaving the fp32 naive and the bf16 default step at the paper
text size stalled most default steps by ~0.1 s (0.10 s/step interleaved, 0.013-0.018 s alone;
not the caching allocator: no frees, and expandable segments did not help; cause not found).
On the CPU both paths draw the very same noise, so their
losses agree to float rounding; on CUDA the noise streams differ (CPU vs device RNG) and the
default path runs in bf16, so the losses agree only statistically.

Model FLOPs utilisation (MFU): after the timed steps, one more step of each path runs under
torch.utils.flop_counter.FlopCounterMode (not timed; its loss is dropped) to count that step's
FLOPs (forward + backward: matmuls, convolutions, attention; elementwise ops and the optimizer
are not counted). The *model* FLOPs of a step are the default path's count (what the step needs;
the naive REKD step also recomputes the teacher, counted apart as its own FLOPs); achieved FLOP/s
= model FLOPs / median s/step, and MFU = achieved / peak. The peak: on CUDA a table of dense bf16
peaks by device name (H100 / H200 989 TFLOP/s, A100 312), else --peak-tflops; on the CPU no
peak is queryable, so unless --peak-tflops is given the peak is the *measured* rate of a
2048 x 2048 fp32 matmul at the start of the run ("matmul peak", ~0.09 TFLOP/s on the 2 shared
cores this was written on): CPU MFU is relative to that measured rate, not to a datasheet.

Each configuration runs in its own subprocess, so peak RSS (ru_maxrss) is per configuration.
Prints a Markdown table and writes bench/results/bench_step.json (--out elsewhere).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rekd_core.config import Backbone, ExperimentConfig, TextBackbone, VisionBackbone, parse_config  # noqa: E402
from rekd_core.data.features import Inputs  # noqa: E402
from rekd_core.model import losses  # noqa: E402
from rekd_core.model.masks import gumbel_noise, hard_mask, relaxed_sample, straight_through  # noqa: E402
from rekd_core.model.models import RationaleModel, count_parameters  # noqa: E402
from rekd_core.presets import get_preset  # noqa: E402
from rekd_core.train.optim import build_optimizer  # noqa: E402
from rekd_core.train.schedule import tau_at  # noqa: E402
from rekd_core.train.tasks import ClsTask, RekdTask, ReTask, mask_iou  # noqa: E402
from rekd_core.train.teacher import TeacherOutputs  # noqa: E402
from rekd_core.train.trainer import train_step  # noqa: E402

VOCAB = 30522  # the BERT uncased vocabulary (MiniLM-L6 and bert-base-uncased share it)
CLS_ID, SEP_ID = 101, 102

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity), matched as substrings of the CUDA device name
CUDA_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}

# name -> (student preset, teacher preset, spec overrides), sizes as the presets'
SIZES: dict[str, dict[str, Any]] = {
    "offline-vision": {"preset": "fmnist-student", "teacher_preset": "fmnist-teacher", "classes": 10},
    "offline-text": {"preset": "rt-student", "teacher_preset": "rt-teacher-scratch", "classes": 2},
    "paper-vision": {"preset": "cifar10-vit-tiny", "teacher_preset": "cifar10-teacher", "classes": 10},
    "paper-text": {"preset": "imdb-bert-mini", "teacher_preset": "imdb-teacher", "classes": 2},
}
BERT_MINI = {"kind": "bert", "hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024}
BERT_BASE = {"kind": "bert", "hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072}


def size_config(size: str, mode: str, *, device: str, precision: str) -> ExperimentConfig:
    """The student preset's config at `mode`, random init, with the teacher preset's backbone."""
    s = SIZES[size]
    raw = copy.deepcopy(get_preset(s["preset"]).config)
    teacher = copy.deepcopy(get_preset(s["teacher_preset"]).config["model"]["student"])
    raw["mode"] = mode
    if size == "paper-text":
        raw["model"]["student"], teacher = dict(BERT_MINI), dict(BERT_BASE)
    for spec in (raw["model"]["student"], teacher):
        if spec["kind"] == "vit":
            spec["pretrained"] = False
    raw["model"]["teacher"] = teacher
    raw["model"]["teacher_run"] = "(built in process)" if mode == "rekd" else None
    raw["data"].pop("tokenizer", None)
    raw["train"].update(device=device, precision=precision, threads=None, max_steps=1000, epochs=None)
    return parse_config(raw)


@dataclass
class Stream:
    """A fixed synthetic split (the engine's tensors, without a data loader) and its batches."""

    x: torch.Tensor  # pixels (N, C, H, W) or ids (N, L)
    attention: torch.Tensor | None
    special: torch.Tensor | None
    y: torch.Tensor
    batch_size: int
    count_special: bool
    num_positions: int

    def inputs(self, idx: torch.Tensor) -> Inputs:
        """As VisionFeaturizer.batch / TextFeaturizer._inputs build them (text trimmed to the longest)."""
        if self.attention is None:
            sel = torch.ones(len(idx), self.num_positions, device=self.x.device)
            return Inputs(x=self.x[idx], attention=None, selectable=sel, keep=None)
        ids, att, sp = self.x[idx], self.attention[idx], self.special[idx]  # type: ignore[index]
        if self.count_special:
            return Inputs(x=ids, attention=att, selectable=torch.ones_like(ids, dtype=torch.float32), keep=None)
        n = int(att.sum(1).max())
        ids, att, sp = ids[:, :n], att[:, :n], sp[:, :n]
        real = att.float()
        return Inputs(x=ids, attention=att, selectable=real * (1 - sp.float()), keep=real * sp.float())

    def batch(self, step: int) -> tuple[Inputs, torch.Tensor, torch.Tensor]:
        n = len(self.y)
        idx = (torch.arange(self.batch_size) + step * self.batch_size) % n
        idx = idx.to(self.x.device)
        return self.inputs(idx), self.y[idx], idx


def make_stream(cfg: ExperimentConfig, num_classes: int, n: int, device: torch.device, seed: int) -> Stream:
    g = torch.Generator().manual_seed(seed + 1)
    spec = cfg.model.student
    y = torch.randint(0, num_classes, (n,), generator=g)
    if isinstance(spec, VisionBackbone):
        x = torch.randn(n, spec.in_chans, spec.img_size, spec.img_size, generator=g)
        return Stream(x.to(device), None, None, y.to(device), cfg.train.batch_size, bool(cfg.loss.count_special),
                      spec.grid[0] * spec.grid[1])
    length = cfg.data.max_len
    lens = torch.randint(length // 2, length + 1, (n,), generator=g)
    ids = torch.randint(1000, VOCAB, (n, length), generator=g)
    pos = torch.arange(length)
    att = (pos < lens[:, None]).long()
    ids = ids * att
    ids[:, 0] = CLS_ID
    ids[torch.arange(n), lens - 1] = SEP_ID
    special = ((pos == 0) | (pos == (lens - 1)[:, None])).long()
    return Stream(ids.to(device), att.to(device), special.to(device), y.to(device), cfg.train.batch_size,
                  bool(cfg.loss.count_special), length)


def build(cfg: ExperimentConfig, spec: Backbone, num_classes: int, *,
          with_generator: bool) -> RationaleModel:
    text = isinstance(spec, TextBackbone)
    return RationaleModel(spec, num_classes=num_classes, with_generator=with_generator,
                          share_backbone=cfg.model.share_backbone, vocab_size=VOCAB if text else None,
                          max_len=cfg.data.max_len if text else None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the two paths ----------------------------------------------------------------------------------

class DefaultPath:
    """The engine's step: rekd_core.train.trainer.train_step on rekd_core.train.tasks, teacher outputs cached."""

    def __init__(self, cfg: ExperimentConfig, model: RationaleModel, teacher: RationaleModel | None,
                 stream: Stream, device: torch.device, *, autocast: bool, seed: int) -> None:
        self.cfg, self.model, self.stream, self.autocast = cfg, model, stream, autocast
        self.opt = build_optimizer(model, cfg, device)
        self.gen = torch.Generator(device=device).manual_seed(seed + 7919)
        self.cache_s = 0.0
        if cfg.mode == "rekd":
            assert teacher is not None
            t0 = time.perf_counter()
            n, chunk = len(stream.y), 64
            order = torch.arange(n, device=device)
            out = TeacherOutputs.compute(teacher, (stream.inputs(order[i:i + chunk]) for i in range(0, n, chunk)),
                                         num_positions=stream.num_positions, device=device, autocast=autocast)
            sync(device)
            self.cache_s = time.perf_counter() - t0
            self.task: ClsTask | ReTask = RekdTask(cfg, out)
        else:
            self.task = ReTask(cfg) if cfg.mode == "re" else ClsTask(cfg)
        self.window: list[torch.Tensor] = []

    def step(self, step: int, tau: float) -> None:
        inputs, y, idx = self.stream.batch(step)
        out = train_step(self.task, self.model, self.opt, inputs, y, idx, tau, self.gen, autocast=self.autocast,
                         grad_clip=self.cfg.optim.grad_clip)
        self.window.append(out.terms["total"].detach())  # on the device; read at the end (a log step)

    def losses(self) -> list[float]:
        return [float(v) for v in self.window]


class NaivePath:
    """The reference code's step, with the same modules and loss functions (see the module doc)."""

    def __init__(self, cfg: ExperimentConfig, model: RationaleModel, teacher: RationaleModel | None,
                 stream: Stream, device: torch.device, *, seed: int) -> None:
        self.cfg, self.model, self.teacher, self.stream, self.device = cfg, model, teacher, stream, device
        body, heads = model.param_groups()
        self.opt = torch.optim.AdamW([{"params": body, "lr": cfg.optim.lr},
                                      {"params": heads, "lr": cfg.optim.head_lr or cfg.optim.lr}],
                                     lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, fused=False)
        self.cpu_gen = torch.Generator().manual_seed(seed + 7919)
        self.window: list[float] = []
        self.metrics: list[dict[str, float]] = []

    def noise(self, shape: torch.Size) -> torch.Tensor:
        return gumbel_noise(shape, generator=self.cpu_gen, device=torch.device("cpu")).to(self.device)

    def forward(self, inputs: Inputs, y: torch.Tensor, tau: float) -> tuple[torch.Tensor, dict[str, Any]]:
        cfg, lc, model = self.cfg, self.cfg.loss, self.model
        if cfg.mode == "cls":
            q = model.predict(inputs, None)
            ce = losses.prediction_ce(q, y)
            return ce, {"q": q}
        z_s = model.generate(inputs)
        s_s = relaxed_sample(z_s, tau, self.noise(z_s.shape))
        m = straight_through(s_s)
        q_s = model.predict(inputs, m)
        terms = losses.re_loss(q_s, y, m, inputs.selectable, lambda_select=lc.lambda_select,
                               p_target=lc.p_target, how=str(lc.length_penalty))
        if cfg.mode == "re":
            return terms["re"], {"q": q_s, "m": m}
        assert self.teacher is not None
        with torch.no_grad():  # the teacher, recomputed every step
            z_t = self.teacher.generate(inputs)
            m_t = hard_mask(z_t)
            q_t = self.teacher.predict(inputs, m.detach() if lc.teacher_predictor_mask == "student" else m_t)
        kd_r = kd_y = None
        if lc.distill in ("both", "rationale"):
            if lc.kd_rationale_input == "noisy":
                s_t, s_stu = relaxed_sample(z_t, tau, self.noise(z_t.shape)), s_s
            else:
                s_t, s_stu = relaxed_sample(z_t, tau, None), relaxed_sample(z_s, tau, None)
            kd_r = losses.rationale_kd(s_t, s_stu, inputs.selectable)
        if lc.distill in ("both", "prediction"):
            kd_y = losses.prediction_kd(q_t, q_s, tau)
        mix = losses.rekd_loss(terms["re"], kd_r, kd_y, tau=tau, alpha=lc.alpha, lambda_R=lc.lambda_R)
        return mix["total"], {"q": q_s, "m": m, "m_t": m_t}

    def step(self, step: int, tau: float) -> None:
        inputs, y, _ = self.stream.batch(step)
        loss, aux = self.forward(inputs, y, tau)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.opt.step()
        # metrics read on the host every step
        met = {"loss": loss.item(), "acc": (aux["q"].argmax(-1) == y).float().mean().item()}
        if "m" in aux:
            sel = inputs.selectable
            met["frac"] = ((aux["m"].detach() * sel).sum(1) / sel.sum(1).clamp_min(1)).mean().item()
        if "m_t" in aux:
            met["iou"] = mask_iou(aux["m"].detach(), aux["m_t"], inputs.selectable).mean().item()
        self.window.append(met["loss"])
        self.metrics.append(met)

    def losses(self) -> list[float]:
        return self.window


def make_paths(cfg: ExperimentConfig, num_classes: int, stream: Stream, device: torch.device, *,
               autocast: bool, seed: int) -> tuple[NaivePath, DefaultPath, dict[str, int]]:
    """Both paths from one initial student (and one teacher), as independent copies."""
    torch.manual_seed(seed)
    student = build(cfg, cfg.model.student, num_classes, with_generator=cfg.mode != "cls")
    teacher = None
    params = {"student": count_parameters(student)}
    if cfg.mode == "rekd":
        assert cfg.model.teacher is not None
        teacher = build(cfg, cfg.model.teacher, num_classes, with_generator=True).to(device).eval()
        teacher.requires_grad_(False)  # as LoadedRun leaves it
        params["teacher"] = count_parameters(teacher)
    naive_model = copy.deepcopy(student).to(device).train()
    default_model = student.to(device).train()
    naive = NaivePath(cfg, naive_model, teacher, stream, device, seed=seed)
    default = DefaultPath(cfg, default_model, teacher, stream, device, autocast=autocast, seed=seed)
    return naive, default, params


def rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_rng_state(device: torch.device, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


# --- FLOPs and peaks --------------------------------------------------------------------------------

def count_step_flops(path: NaivePath | DefaultPath, cfg: ExperimentConfig, step: int, total: int) -> int:
    """FLOPs of one more (untimed) step of `path`, forward + backward; its loss is not kept."""
    s = cfg.schedule
    tau = tau_at(min(step, total - 1), total_steps=total, tau0=s.tau0, tau_final=s.tau_final,
                 update_every=s.tau_update_every)
    with FlopCounterMode(display=False) as counter:
        path.step(step, tau)
    path.window.pop()
    if isinstance(path, NaivePath):
        path.metrics.pop()
    return int(counter.get_total_flops())


def matmul_tflops(n: int = 2048, repeats: int = 5) -> float:
    """The measured fp32 matmul rate on this CPU (median of `repeats`), the CPU's "matmul peak"."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e12


def peak_tflops(device: str, given: float | None) -> tuple[float | None, str]:
    """(peak TFLOP/s, where it came from)."""
    if given is not None:
        return given, "--peak-tflops"
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        for key, peak in CUDA_PEAK_TFLOPS.items():
            if key in name:
                return peak, f"bf16 dense datasheet peak ({key})"
        return None, f"unknown device {name!r}: pass --peak-tflops"
    return matmul_tflops(), "measured 2048x2048 fp32 matmul (matmul peak)"


# --- one configuration ----------------------------------------------------------------------------

def interleave(naive: NaivePath, default: DefaultPath, cfg: ExperimentConfig, *, total: int, warmup: int,
               device: torch.device, seed: int, blocks: bool = False) -> tuple[dict[str, list[float]], dict[str, int]]:
    """`total` steps of both paths, alternating (or in two blocks); (seconds per timed step, CUDA peak bytes)."""
    s = cfg.schedule
    times: dict[str, list[float]] = {"naive": [], "default": []}
    peak: dict[str, int] = {"naive": 0, "default": 0}
    # Each path owns a copy of the global RNG (dropout draws from it), so interleaving the
    # paths leaves both with the same dropout masks as if each ran alone.
    torch.manual_seed(seed + 3)
    rng = {name: rng_state(device) for name in times}
    paths = (("naive", naive), ("default", default))
    if blocks:  # all of naive's steps, then all of default's
        order = [(step, name, path) for name, path in paths for step in range(total)]
    else:
        order = [(step, name, path) for step in range(total) for name, path in paths]
    for step, name, path in order:
        tau = tau_at(step, total_steps=total, tau0=s.tau0, tau_final=s.tau_final,
                     update_every=s.tau_update_every)
        set_rng_state(device, rng[name])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync(device)
        t0 = time.perf_counter()
        path.step(step, tau)
        sync(device)
        dt = time.perf_counter() - t0
        rng[name] = rng_state(device)
        if step >= warmup:
            times[name].append(dt)
        if device.type == "cuda":
            peak[name] = max(peak[name], torch.cuda.max_memory_allocated(device))
    return times, peak


def run_case(size: str, mode: str, *, device: torch.device, steps: int, warmup: int, seed: int,
             cpu_bf16: bool, blocks: bool = False, peak_tf: float | None = None) -> dict[str, Any]:
    autocast = device.type == "cuda" or cpu_bf16
    cfg = size_config(size, mode, device=device.type, precision="bf16" if autocast else "fp32")
    total = warmup + steps
    stream = make_stream(cfg, SIZES[size]["classes"], cfg.train.batch_size * total, device, seed)
    naive, default, params = make_paths(cfg, SIZES[size]["classes"], stream, device, autocast=autocast, seed=seed)
    times, peak = interleave(naive, default, cfg, total=total, warmup=warmup, device=device, seed=seed,
                             blocks=blocks)
    flops = {name: count_step_flops(path, cfg, total, total) for name, path in (("naive", naive), ("default", default))}
    res: dict[str, Any] = {"size": size, "mode": mode, "batch": cfg.train.batch_size, "steps": steps,
                           "warmup": warmup, "schedule": "blocks" if blocks else "interleaved",
                           "params": params, "autocast_bf16": autocast,
                           "teacher_cache_s": default.cache_s,
                           "teacher_cache_s_per_sample": default.cache_s / len(stream.y),
                           "model_flops_per_step": flops["default"], "peak_tflops": peak_tf}
    for name, path in (("naive", naive), ("default", default)):
        ts = times[name]
        med = statistics.median(ts)
        ls = path.losses()
        res[name] = {"s_per_step": med, "s_per_step_mean": statistics.fmean(ts), "s_per_step_all": ts,
                     "samples_per_s": cfg.train.batch_size / med, "loss_last": ls[-1], "losses": ls,
                     "flops_per_step": flops[name],
                     # model FLOPs (the default path's count) per second: the naive path's extra
                     # teacher recomputation is work the step does not need
                     "model_tflops_per_s": flops["default"] / med / 1e12}
        if peak_tf:
            res[name]["mfu"] = res[name]["model_tflops_per_s"] / peak_tf
        if device.type == "cuda":
            res[name]["cuda_peak_mb"] = peak[name] / 2**20
    res["ratio"] = res["naive"]["s_per_step"] / res["default"]["s_per_step"]  # of medians
    res["ratio_total"] = sum(times["naive"]) / sum(times["default"])
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


# --- the predictor reading only the selected positions ---------------------------------------------

def predictor_speed(sizes: list[str], *, fractions: tuple[float, ...], reps: int, seed: int,
                    device: torch.device) -> list[dict[str, Any]]:
    """Seconds of the student predictor's forward (eval, no grad) and forward + backward (train mode),
    `model.predictor_attention` full against selected, one random mask of exactly `fraction` of the
    selectable positions per input, the two interleaved rep by rep; medians."""
    rows: list[dict[str, Any]] = []
    for size in sizes:
        cfg = size_config(size, "re", device=device.type, precision="fp32")
        torch.manual_seed(seed)
        model = build(cfg, cfg.model.student, SIZES[size]["classes"], with_generator=False).to(device)
        stream = make_stream(cfg, SIZES[size]["classes"], cfg.train.batch_size, device, seed)
        inputs, y, _ = stream.batch(0)
        for frac in fractions:
            g = torch.Generator().manual_seed(seed)
            score = torch.rand(inputs.selectable.shape, generator=g).to(device)
            score = score.masked_fill(inputs.selectable <= 0, -1)
            k = (inputs.selectable.sum(1) * frac).round().clamp(min=1)
            rank = score.argsort(1, descending=True).argsort(1)
            mask = (rank < k[:, None]).float() * inputs.selectable
            times: dict[str, dict[str, list[float]]] = {a: {"eval": [], "train": []} for a in ("full", "selected")}
            for rep in range(reps + 1):
                for att in ("full", "selected"):
                    model.predictor_attention = att
                    model.eval()
                    with torch.inference_mode():
                        sync(device)
                        t0 = time.perf_counter()
                        model.predict(inputs, mask)
                        sync(device)
                        t_eval = time.perf_counter() - t0
                    model.train()
                    m = mask.clone().requires_grad_(True)  # as the straight-through mask: values 0/1, a gradient
                    sync(device)
                    t0 = time.perf_counter()
                    losses.prediction_ce(model.predict(inputs, m), y).backward()
                    sync(device)
                    t_train = time.perf_counter() - t0
                    model.zero_grad(set_to_none=True)
                    if rep:  # the first rep warms up
                        times[att]["eval"].append(t_eval)
                        times[att]["train"].append(t_train)
            row: dict[str, Any] = {"size": size, "batch": cfg.train.batch_size, "positions": stream.num_positions,
                                   "fraction": frac, "reps": reps}
            for att in ("full", "selected"):
                for kind in ("eval", "train"):
                    row[f"{att}_{kind}_s"] = statistics.median(times[att][kind])
            for kind in ("eval", "train"):
                row[f"speedup_{kind}"] = row[f"full_{kind}_s"] / row[f"selected_{kind}_s"]
            rows.append(row)
            print(f"# {size} p={frac}: eval {row['full_eval_s']:.4f} -> {row['selected_eval_s']:.4f} s "
                  f"({row['speedup_eval']:.2f}x), train {row['full_train_s']:.4f} -> {row['selected_train_s']:.4f} s "
                  f"({row['speedup_train']:.2f}x)", file=sys.stderr, flush=True)
    return rows


def predictor_table(rows: list[dict[str, Any]]) -> str:
    head = ("| size | batch | positions | selected fraction | forward full s | forward selected s | speed-up "
            "| fwd+bwd full s | fwd+bwd selected s | speed-up |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        out.append(f"| {r['size']} | {r['batch']} | {r['positions']} | {r['fraction']:.2f} | {r['full_eval_s']:.4f} | "
                   f"{r['selected_eval_s']:.4f} | {r['speedup_eval']:.2f}x | {r['full_train_s']:.4f} | "
                   f"{r['selected_train_s']:.4f} | {r['speedup_train']:.2f}x |")
    return "\n".join(out)


# --- the driver ------------------------------------------------------------------------------------

def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def table(rows: list[dict[str, Any]], device: str) -> str:
    cuda = device == "cuda"
    head = ("| size | mode | batch | steps | naive s/step | default s/step | naive/default | default samples/s "
            "| loss naive | loss default | teacher cache /sample | peak RSS MB | model GFLOP/step "
            "| default TFLOP/s | MFU naive | MFU default |")
    head += " CUDA peak MB naive / default |" if cuda else ""
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        n, d = r["naive"], r["default"]
        line = (f"| {r['size']} | {r['mode']} | {r['batch']} | {r['steps']} | {n['s_per_step']:.4f} | "
                f"{d['s_per_step']:.4f} | {r['ratio']:.2f}x | {d['samples_per_s']:.1f} | {n['loss_last']:.4f} | "
                f"{d['loss_last']:.4f} | {r['teacher_cache_s_per_sample'] * 1000:.2f} ms | {r['peak_rss_mb']:.0f} | "
                f"{r['model_flops_per_step'] / 1e9:.2f} | {d['model_tflops_per_s']:.4f} | {pct(n.get('mfu'))} | "
                f"{pct(d.get('mfu'))} |")
        if cuda:
            line += f" {n['cuda_peak_mb']:.0f} / {d['cuda_peak_mb']:.0f} |"
        out.append(line)
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=20, help="timed steps at the offline sizes")
    ap.add_argument("--paper-steps", type=int, default=2, help="timed steps at the paper sizes")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--only", choices=["offline", "paper"], default=None)
    ap.add_argument("--modes", default="cls,re,rekd")
    ap.add_argument("--cpu-bf16", action="store_true",
                    help="bf16 autocast on the CPU too (slower than fp32 on CPUs without fast bf16 matmuls)")
    ap.add_argument("--blocks", action="store_true",
                    help="time all naive steps, then all default steps (instead of alternating step by step)")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="peak for MFU (default: CUDA datasheet table by device name; on the CPU the measured "
                    "rate of a 2048x2048 fp32 matmul, ~0.09 TFLOP/s on the 2-core machine this was written on)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_step.json"))
    ap.add_argument("--predictor", action="store_true",
                    help="instead: time the student predictor (fp32), predictor_attention full vs selected, "
                    "at selected fractions --fractions, and write --out")
    ap.add_argument("--fractions", default="0.1,0.15,0.2,1.0")
    ap.add_argument("--reps", type=int, default=10, help="timed repetitions per cell with --predictor")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: SIZE:MODE in this process
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.predictor:
        sizes = [s for s in SIZES if args.only is None or s.startswith(args.only)]
        prow = predictor_speed(sizes, fractions=tuple(float(f) for f in args.fractions.split(",")), reps=args.reps,
                               seed=args.seed, device=device)
        penv = {"device": args.device, "cuda": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
                "torch": torch.__version__, "threads": torch.get_num_threads(),
                "command": " ".join(["python", "bench/bench_step.py"] + sys.argv[1:])}
        Path(args.out).write_text(json.dumps({"env": penv, "rows": prow}, indent=2))
        print(predictor_table(prow))
        return
    if args.case:
        size, mode = args.case.split(":")
        steps = args.paper_steps if size.startswith("paper") else args.steps
        res = run_case(size, mode, device=device, steps=steps, warmup=args.warmup, seed=args.seed,
                       cpu_bf16=args.cpu_bf16, blocks=args.blocks, peak_tf=args.peak_tflops)
        print("RESULT " + json.dumps(res))
        return

    peak_tf, peak_source = peak_tflops(args.device, args.peak_tflops)
    print(f"# peak {peak_tf} TFLOP/s ({peak_source})", file=sys.stderr, flush=True)
    sizes = [s for s in SIZES if args.only is None or s.startswith(args.only)]
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for size in sizes:
        for mode in args.modes.split(","):
            cmd = [sys.executable, __file__, "--case", f"{size}:{mode}", "--device", args.device, "--steps",
                   str(args.steps), "--paper-steps", str(args.paper_steps), "--warmup", str(args.warmup),
                   "--seed", str(args.seed)] + (["--threads", str(args.threads)] if args.threads else []) + (
                   ["--cpu-bf16"] if args.cpu_bf16 else []) + (["--blocks"] if args.blocks else []) + (
                   ["--peak-tflops", str(peak_tf)] if peak_tf else [])
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                print(f"# {size} {mode}: FAILED", file=sys.stderr, flush=True)
                failed.append(f"{size}:{mode}")
                continue
            rows.append(json.loads(line[len("RESULT "):]))
            r = rows[-1]
            print(f"# {size} {mode}: naive {r['naive']['s_per_step']:.4f} s, default {r['default']['s_per_step']:.4f}"
                  f" s ({r['ratio']:.2f}x) [{time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
    env = {"device": args.device, "torch": torch.__version__, "threads": args.threads or torch.get_num_threads(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "machine": platform.processor() or
           platform.machine(), "cuda": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
           "peak_tflops": peak_tf, "peak_source": peak_source,
           "command": " ".join(["python", "bench/bench_step.py"] + sys.argv[1:])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    print(table(rows, args.device))
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
