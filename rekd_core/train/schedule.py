"""A run's schedules, pure functions of the step: its length (`plan_steps`), the Gumbel temperature
tau_k = tau0 * exp(-gamma * k) (`tau_at`, `run_tau`) and the selection target (`p_target_at`)."""

from __future__ import annotations

import math

from ..config import ExperimentConfig, ScheduleConfig


def tau_at(step: int, *, total_steps: int, tau0: float, tau_final: float, update_every: int) -> float:
    """Temperature used at (0-based) `step` of a run of `total_steps` steps.

    tau only changes every `update_every` steps (k is the step rounded down to that cadence);
    gamma is chosen so that the last update, the one in force at the last step, lands exactly
    on `tau_final`. A run shorter than one update period keeps tau0.
    """
    last = max(total_steps - 1, 0)
    k_last = (last // update_every) * update_every
    if k_last == 0:
        return float(tau0)
    k = (min(max(step, 0), last) // update_every) * update_every
    gamma = math.log(tau0 / tau_final) / k_last
    return float(tau0 * math.exp(-gamma * k))


def plan_steps(cfg: ExperimentConfig, n_train: int) -> tuple[int, int]:
    """(steps per epoch, total steps). Epochs drop the last partial batch."""
    per_epoch = max(n_train // cfg.train.batch_size, 1)
    if cfg.train.max_steps is not None:
        return per_epoch, cfg.train.max_steps
    return per_epoch, max(1, math.ceil(float(cfg.train.epochs or 1) * per_epoch))


def run_tau(s: ScheduleConfig, step: int, total_steps: int) -> float:
    """The Gumbel temperature at `step` of a run of `total_steps`: annealed over the steps after the
    full-input warm-up."""
    warm = min(s.full_input_steps, total_steps)
    return tau_at(step - warm, total_steps=total_steps - warm, tau0=s.tau0, tau_final=s.tau_final,
                  update_every=s.tau_update_every)


def p_target_at(cfg: ExperimentConfig, step: int) -> float:
    """The selection target at `step`: every position, falling linearly to loss.p_target over
    schedule.sparsity_warmup_steps after the full-input steps (constant without a warm-up)."""
    s, p = cfg.schedule, cfg.loss.p_target
    if not s.sparsity_warmup_steps:
        return p
    done = min(max(step - s.full_input_steps, 0) / s.sparsity_warmup_steps, 1.0)
    return 1.0 + (p - 1.0) * done
