"""The temperature schedule tau_k = tau0 * exp(-gamma * k), a pure function of the step."""

from __future__ import annotations

import math


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
