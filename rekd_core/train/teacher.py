"""The teacher of a distilled (REKD) run: loading it (checked by config.teacher_mismatch, the one
rule of which runs can teach which), and its outputs on the student's data, computed once and cached
in the teacher's run directory (a lock lets students distilling in parallel share one computation).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import torch

from ..config import ExperimentConfig, teacher_mismatch
from ..data.features import Featurizer, Inputs, Prepared
from ..model.models import RationaleModel
from ..model.runmodel import LoadedRun
from ..store.checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


class TeacherMismatch(ValueError):
    """model.teacher_run names a run that cannot teach this one (config.teacher_mismatch says why)."""


class TeacherOutputs:
    """The frozen teacher's generator logits Z^T and own-mask prediction Q^T for one split.

    The teacher is in eval mode and inputs are never augmented, so both are fixed functions of
    the example: they are computed once, in fixed chunks in index order (so the values do not
    depend on how batches happen to be drawn, which keeps resumed runs exact), and then read by
    index. When the teacher predictor must read the *student's* mask (reference variant), Q^T
    changes every step and `predict_with` runs the teacher predictor live instead.
    """

    def __init__(self, teacher: RationaleModel, z: torch.Tensor, q: torch.Tensor, *,
                 device: torch.device, autocast: bool) -> None:
        self.teacher = teacher
        self.z = z.to(device)  # (N, P, 2), right-padded with zeros past each chunk's length
        self.q = q.to(device)  # (N, C)
        self.device = device
        self.autocast = autocast

    @classmethod
    def compute(cls, teacher: RationaleModel, batches: Iterable[Inputs], *, num_positions: int,
                device: torch.device, autocast: bool) -> TeacherOutputs:
        zs, qs = [], []
        # inference_mode (no autograd bookkeeping at all); the results are concatenated outside
        # it, so the cache holds ordinary tensors that a student step may use in its graph.
        with torch.inference_mode():
            for inputs in batches:
                z, q = _own_outputs(teacher, inputs, device, autocast)
                zs.append(torch.nn.functional.pad(z.float(), (0, 0, 0, num_positions - z.shape[1])))
                qs.append(q.float())
        return cls(teacher, torch.cat(zs), torch.cat(qs), device=device, autocast=autocast)

    def own(self, idx: torch.Tensor, inputs: Inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """(Z^T, Q^T with the teacher's own deterministic mask) for dataset rows `idx` (batched as `inputs`)."""
        return self.z[idx, :inputs.selectable.shape[1]], self.q[idx]

    def predict_with(self, inputs: Inputs, mask: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            q = self.teacher.predict(inputs, mask)
        return q.float().clone()  # cloned outside inference_mode: an ordinary tensor for the KD loss


class LiveTeacher(TeacherOutputs):
    """The same outputs computed from each batch as it comes (`model.teacher_outputs: live`): the
    reference code's way, one teacher forward pass per student step. Equal to the cached values up to
    float rounding (the batch groups examples differently); kept for benchmarks of the naive path
    (bench/bench_run.py --student-set model.teacher_outputs=live) and for a teacher too large to cache
    its outputs on a split."""

    def __init__(self, teacher: RationaleModel, *, device: torch.device, autocast: bool) -> None:
        super().__init__(teacher, torch.empty(0, 0, 2), torch.empty(0, 0), device=device, autocast=autocast)

    def own(self, idx: torch.Tensor, inputs: Inputs) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            z, q = _own_outputs(self.teacher, inputs, self.device, self.autocast)
        return z.float().clone(), q.float().clone()  # ordinary tensors, outside inference_mode


def _own_outputs(teacher: RationaleModel, inputs: Inputs, device: torch.device,
                 autocast: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's generator logits Z and its prediction Q from its own deterministic mask."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        z = teacher.generate(inputs)
        return z, teacher.predict(inputs, teacher.select(z, inputs.selectable))


def load_teacher(cfg: ExperimentConfig, class_names: list[str], device: torch.device) -> LoadedRun:
    """The frozen teacher of `cfg` (model.teacher_run at model.teacher_checkpoint), once it is known
    to fit a student with classes `class_names`."""
    run = LoadedRun(Path(cfg.model.teacher_run or ""), which=cfg.model.teacher_checkpoint, device=device)
    # the API made the same check when the run was requested (the classes aside: it knows them now)
    why = teacher_mismatch(cfg, run.config, student_classes=class_names, teacher_classes=run.class_names)
    if why:
        raise TeacherMismatch(f"model.teacher_run: {why}")
    return run


def teacher_outputs(run: LoadedRun, cfg: ExperimentConfig, feat: Featurizer, data: Prepared, split: str, *,
                    device: torch.device, autocast: bool) -> TeacherOutputs:
    """The teacher's outputs on a split of the student's data (`cfg`), cached in the teacher's run
    directory across student runs.

    The key covers everything the values depend on: the teacher checkpoint file, the data
    split, how inputs are featurised and the precision; any change computes them afresh.
    """
    if cfg.model.teacher_outputs == "live":
        return LiveTeacher(run.model, device=device, autocast=autocast)
    ckpt = run.checkpoint_path
    st = ckpt.stat()
    d = cfg.data
    key_src = {"ckpt": [ckpt.name, st.st_size, st.st_mtime_ns, run.step], "split": split, "n": len(data),
               "data": [d.dataset, d.dev_fraction, d.split_seed, d.max_train, d.max_eval, d.tokenizer,
                        d.max_len, d.benchmark.model_dump()], "count_special": cfg.loss.count_special,
               "bf16": autocast, "version": 2}
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:20]
    path = run.run_dir / "cache" / f"teacher-{split}-{key}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Students distilling from one teacher in parallel compute its outputs once: the others
    # wait on the lock, then read the file.
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            try:
                t, _ = load_checkpoint(path, device=device)
                return TeacherOutputs(run.model, t["z"], t["q"], device=device, autocast=autocast)
            except (ValueError, KeyError) as err:
                log.warning("recomputing unreadable teacher cache %s: %s", path, err)
        chunk = 64
        order = feat.inference_order(data)
        batches = (feat.batch(data, order[i:i + chunk]) for i in range(0, len(data), chunk))
        out = TeacherOutputs.compute(run.model, batches, num_positions=feat.num_positions,
                                     device=device, autocast=autocast)
        unsort = torch.argsort(order)
        out.z, out.q = out.z[unsort], out.q[unsort]
        save_checkpoint(path, {"z": out.z, "q": out.q}, key_src)
    return out
