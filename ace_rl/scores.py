"""Normalised scores: how a task's score is put on a common scale for aggregates across tasks, with sources.

A normalisation maps a score linearly so that ``low`` becomes 0 and ``high`` becomes 1:
``(score - low) / (high - low)``.

- Success rates (tasks with a success signal) are kept as they are: low 0, high 1.
- dm_control returns are divided by 1000: every dm_control reward lies in [0, 1] and its episodes last 1000
  steps, so returns lie in [0, 1000].
- Gymnasium MuJoCo returns use D4RL's random and expert reference returns (``REF_MIN_SCORE`` and
  ``REF_MAX_SCORE`` in D4RL's ``d4rl/infos.py``), the references offline RL normalises by. They were measured
  on the v2-era Gym MuJoCo environments; the v4/v5 environments trained on here share the reward terms but
  differ in details (Ant's contact forces, for one), so these normalised scores are close, not exact.
- Other tasks have no reference: they enter the per-task figures and tables only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

D4RL_SOURCE = (
    "D4RL d4rl/infos.py REF_MIN_SCORE (random policy) and REF_MAX_SCORE (expert), measured on the v2-era Gym "
    "MuJoCo environments"
)

# Random and expert returns per Gymnasium MuJoCo task (any version suffix).
MUJOCO_REFERENCES: dict[str, tuple[float, float]] = {
    "HalfCheetah": (-280.178953, 12135.0),
    "Hopper": (-20.272305, 3234.3),
    "Walker2d": (1.629008, 4592.3),
    "Ant": (-325.6, 3879.7),
}


@dataclass(frozen=True)
class Normalisation:
    """``(score - low) / (high - low)``: ``low`` maps to 0, ``high`` to 1."""

    low: float
    high: float
    description: str
    """How the score is normalised, with the source of the references."""

    def __call__(self, scores: np.ndarray | float) -> np.ndarray:
        return (np.asarray(scores, dtype=float) - self.low) / (self.high - self.low)


SUCCESS_RATE = Normalisation(0.0, 1.0, "success rate as it is")
DM_CONTROL = Normalisation(0.0, 1000.0, "return / 1000 (dm_control returns lie in [0, 1000])")


def normalisation(env: str, success: bool) -> Normalisation | None:
    """How the scores of task ``env`` are normalised (``success``: it is scored by its success rate), or None
    where no reference is known."""
    if success:
        return SUCCESS_RATE
    if env.startswith("dmc:"):
        return DM_CONTROL
    match = re.fullmatch(r"(\w+?)-v\d+", env)
    if match and match.group(1) in MUJOCO_REFERENCES:
        random_return, expert_return = MUJOCO_REFERENCES[match.group(1)]
        return Normalisation(
            random_return,
            expert_return,
            f"(return - {random_return:g}) / ({expert_return:g} - {random_return:g}): random and expert returns "
            f"from {D4RL_SOURCE}",
        )
    return None
