"""Which causal estimator a run uses when `--causal-method auto` (the default) leaves it to ace-rl.

DirectLiNGAM (``directlingam``, the official code's estimator) is used wherever its fits cost at most
``DIRECTLINGAM_SHARE_LIMIT`` (1 %) of the run's training time, the fast ``sink`` estimator above that
(docs/algorithm.md, "Which estimator a run uses"). The share is an estimate from the task's size and the run's
settings alone, so that the same command picks the same estimator on every machine:

    share = estimate_directlingam_seconds(causal_samples, n_variables)
            / (causal_interval * updates_per_step * seconds_per_update)

with ``n_variables`` = observation values + action dimensions (distractors included) + 1 (the reward), and
``seconds_per_update`` = the update's floating-point operations (`ace_rl.networks.update_flops`) over the rate
the update reached on 2 CPU cores (``MEASURED_UPDATES``). The time of the environment steps is left out, so the
share is, if anything, overestimated. On a GPU the updates are faster and the true share is larger.

The choice is made once, when a new run starts (`ace_rl.trainer.run_training`); config.json records the method chosen
and why (``causal_method_reason``), and a resumed run keeps what it recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ace_rl.agents import agent_spec
from ace_rl.causal import estimate_directlingam_seconds
from ace_rl.config import TrainConfig
from ace_rl.hyperparameters import CausalMethod
from ace_rl.networks import update_flops

# The bare ACE update on 2 CPU cores (PyTorch 2.13 CPU, 2 threads, the default fused-Adam path; HalfCheetah-v5,
# benchmarks/throughput.py, benchmarks/results/throughput.json "bare_update", 2026-12-02): (floating-point
# operations per update, updates per second) at the small preset (3 x 256, batch 256: 0.880 GFLOP at 63.7
# updates/s = 56.0 GFLOP/s) and at the paper preset (3 x 1024, batch 512: 27.2 GFLOP at 4.83 updates/s = 131.3
# GFLOP/s). Bigger products use the cores better: between the two the rate is interpolated linearly in the
# logarithm of the update's operations, and outside them it is held at the nearer one.
MEASURED_UPDATES: tuple[tuple[float, float], tuple[float, float]] = ((0.8798208e9, 63.70), (27.1712256e9, 4.831))
# DirectLiNGAM is the default where its fits are estimated to take at most this share of training time.
DIRECTLINGAM_SHARE_LIMIT = 0.01
AUTO = "auto"
GIVEN = "given"


def update_flops_per_second(flops: float) -> float:
    """The rate (operations per second) an update of ``flops`` operations is taken to run at (MEASURED_UPDATES)."""
    (low_flops, low_rate), (high_flops, high_rate) = MEASURED_UPDATES
    low_speed, high_speed = low_flops * low_rate, high_flops * high_rate
    position = (math.log(flops) - math.log(low_flops)) / (math.log(high_flops) - math.log(low_flops))
    position = min(max(position, 0.0), 1.0)
    return low_speed + position * (high_speed - low_speed)


def seconds_per_update(config: TrainConfig, obs_dim: int, action_dim: int) -> float:
    """Estimated seconds of one update of ``config``'s networks and batch on 2 CPU cores."""
    flops = update_flops(obs_dim, action_dim, config.hidden_size, config.batch_size, config.policy_frequency)
    return flops / update_flops_per_second(flops)


def causal_variables(obs_dim: int, action_dim: int) -> int:
    """The columns a causal fit sees: the observation's values, the action's dimensions and the reward."""
    return obs_dim + action_dim + 1


def directlingam_share(config: TrainConfig, obs_dim: int, action_dim: int) -> float:
    """Estimated seconds of DirectLiNGAM's fits per second of training for ``config`` on a task of these sizes."""
    fit = estimate_directlingam_seconds(config.causal_samples, causal_variables(obs_dim, action_dim))
    training = config.causal_interval * config.updates_per_step * seconds_per_update(config, obs_dim, action_dim)
    return fit / training


@dataclass(frozen=True)
class CausalMethodChoice:
    """The estimator a run uses and why (config.json's ``causal_method`` and ``causal_method_reason``)."""

    method: CausalMethod
    reason: str


def choose_causal_method(config: TrainConfig, obs_dim: int, action_dim: int) -> CausalMethodChoice:
    """The estimator of a new run of ``config`` on a task with ``obs_dim`` observation values and ``action_dim``
    action dimensions (distractors included): ``config.causal_method`` as given, or for ``auto`` DirectLiNGAM where
    its fits are estimated at most DIRECTLINGAM_SHARE_LIMIT of training time (and within --causal-time-limit, if
    given), else sink. An agent that fits no causal weights (sac, td3) records sink, as ace-rl always did."""
    if config.causal_method != AUTO:
        return CausalMethodChoice(config.causal_method, GIVEN)
    if not agent_spec(config.algo).causal:
        return CausalMethodChoice("sink", f"{AUTO}: --algo {config.algo} fits no causal weights (unused)")
    if config.causal_target != "reward":
        return CausalMethodChoice(
            "sink", f"{AUTO}: --causal-target {config.causal_target} fits its own regression (unused)"
        )
    n_variables = causal_variables(obs_dim, action_dim)
    share = directlingam_share(config, obs_dim, action_dim)
    sizes = (
        f"{n_variables} variables, {config.causal_samples:,} samples every {config.causal_interval:,} steps, "
        f"3 x {config.hidden_size} networks, batch {config.batch_size}"
    )
    estimate = f"DirectLiNGAM's fits estimated at {_percent(share)} of training time ({sizes})"
    limit = f"{100 * DIRECTLINGAM_SHARE_LIMIT:g} %"
    if share > DIRECTLINGAM_SHARE_LIMIT:
        return CausalMethodChoice("sink", f"{AUTO}: {estimate}, above {limit}")
    seconds = estimate_directlingam_seconds(config.causal_samples, n_variables)
    if config.causal_time_limit is not None and seconds > config.causal_time_limit:
        return CausalMethodChoice(
            "sink",
            f"{AUTO}: {estimate}, but {seconds:.3g} s per fit, over --causal-time-limit {config.causal_time_limit:g}",
        )
    return CausalMethodChoice("directlingam", f"{AUTO}: {estimate}, at most {limit}")


def causal_method_line(config: TrainConfig, resumed: bool) -> str | None:
    """What a run says at its start about its causal method and why; None for an agent that fits no causal
    weights."""
    if not agent_spec(config.algo).causal:
        return None
    if resumed:
        reason = config.causal_method_reason or "its config.json predates --causal-method auto"
        return f"causal method {config.causal_method}, as the resumed run recorded it ({reason})"
    if config.causal_target != "reward" and config.causal_method != "none":
        return f"causal target {config.causal_target}: its own regression, not a causal method's"
    return f"causal method {config.causal_method} ({config.causal_method_reason or GIVEN})"


def _percent(share: float) -> str:
    value = 100 * share
    return f"{value:.2g} %" if value < 10 else f"{value:,.0f} %"
