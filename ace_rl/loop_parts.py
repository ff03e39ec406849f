"""The parts that hang off the training loop, one job each, as callbacks do in Stable-Baselines3.

`ace_rl.trainer.Trainer` steps the environment and updates the agent; after each step it asks these parts
whether they are due. Each holds its own state (and its own share of a full-state checkpoint) and can be built and
tested without a Trainer:

- `Evaluation`: deterministic evaluation episodes, metrics.csv, and best.pt at every new best return;
- `CausalFits`: the causal model's fit every ``--causal-interval`` env steps, handed to the agent;
- `LossLog`: the latest update's losses, checked to be finite and written every ``--log-every`` steps;
- `CheckpointSchedule`: when the next full-state checkpoint is due (written at an episode's end).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import torch
from torch import nn

from ace_rl.agents import Agent, AgentError, CausallyWeighted
from ace_rl.causal import CausalTimeLimitError, causal_weights
from ace_rl.config import ConfigError, TrainConfig
from ace_rl.errors import RUN_FAULT, AceRlError
from ace_rl.evaluation import run_episodes
from ace_rl.logger import RunLogger
from ace_rl.replay import ReplayBuffer
from ace_rl.runstate import safe_name


class NonFiniteError(AceRlError, RuntimeError):
    """A loss or a parameter became NaN or infinite; training stopped before saving it."""

    exit_code = RUN_FAULT


class PolicyWriter(Protocol):
    def __call__(self, name: str, actor: nn.Module, env_step: int, eval_return: float | None) -> None:
        """Write ``actor`` as RUN/checkpoints/NAME.pt with the run's metadata."""
        ...


class Evaluation:
    """Every ``--eval-every`` env steps and at the last one: ``--eval-episodes`` deterministic episodes, a row of
    metrics.csv, TensorBoard (and W&B) scalars, and best.pt whenever the mean return is the best so far.

    The best policy's weights are also kept here (and so in every full-state checkpoint), so that a resumed run
    restores the best.pt of its checkpoint's time, not one written after it by the process that was killed.
    """

    def __init__(self, config: TrainConfig, eval_env: gym.Env, logger: RunLogger, write_policy: PolicyWriter) -> None:
        self.every = config.eval_every
        self.env_id = config.env
        self.total_steps = config.total_steps
        self.episodes = config.eval_episodes
        self.eval_env = eval_env
        self.logger = logger
        self.write_policy = write_policy
        self.best_return = -math.inf
        self.best_policy: dict[str, Any] | None = None
        """The actor's weights ("actor"), "env_step" and "eval_return_mean" of best.pt."""
        self.last_return: float | None = None

    def due(self, env_step: int) -> bool:
        return env_step % self.every == 0 or env_step == self.total_steps

    def run(self, agent: Agent, env_step: int, wall_time: float) -> None:
        evaluation = run_episodes(
            lambda obs: agent.act(obs, deterministic=True), self.eval_env, self.episodes, self.env_id
        )
        mean_return, std_return, success_rate = evaluation.mean, evaluation.std, evaluation.success_rate
        self.last_return = mean_return
        self.logger.metrics.write(
            env_step=env_step,
            updates=agent.updates,
            eval_return_mean=mean_return,
            eval_return_std=std_return,
            eval_success_rate="" if success_rate is None else success_rate,
            wall_time=wall_time,
        )
        scalars = {"eval/return_mean": mean_return, "eval/return_std": std_return}
        if success_rate is not None:
            scalars["eval/success_rate"] = success_rate
        self.logger.scalars(scalars, env_step)
        if self.logger.wandb is not None:
            self.logger.wandb.tables(env_step)
        if mean_return > self.best_return:
            self.best_return = mean_return
            self.write_policy("best", agent.actor, env_step, mean_return)
            self.best_policy = {
                "actor": {name: value.detach().cpu().clone() for name, value in agent.actor.state_dict().items()},
                "env_step": env_step,
                "eval_return_mean": mean_return,
            }

    def state_dict(self) -> dict[str, Any]:
        return {"best_return": self.best_return, "best_policy": self.best_policy, "last_eval_return": self.last_return}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_return = float(state["best_return"])
        self.best_policy = state.get("best_policy")
        self.last_return = state["last_eval_return"]

    def restore_best_policy(self, state: dict[str, Any], path: Path, actor: nn.Module) -> str | None:
        """After loading the checkpoint ``state``: make best.pt (``path``) the best policy as of that checkpoint, the
        one an uninterrupted run has at that env step, and say so when best.pt changed (a process killed after the
        checkpoint may have written a newer one, whose return the resumed run's best return does not know).
        ``actor``: the agent's actor, copied to write the kept weights.

        A checkpoint from before best.pt's content was kept in it cannot restore it: its best.pt, if readable,
        stays, and its return becomes the run's best return, so that only a better policy replaces it."""
        try:
            # Read, not built into an actor: building one would draw from the random state just restored.
            stored = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
        except Exception:  # noqa: BLE001 - an unreadable best.pt is replaced like a missing one
            stored = None
        if not isinstance(stored, dict) or not isinstance(stored.get("actor"), dict):
            stored = None
        if "best_policy" not in state:
            if stored is None or stored.get("eval_return_mean") is None:
                return None
            self.best_policy = {
                "actor": stored["actor"],
                "env_step": int(stored.get("env_step", 0)),
                "eval_return_mean": float(stored["eval_return_mean"]),
            }
            if self.best_policy["eval_return_mean"] <= self.best_return:
                return None
            self.best_return = self.best_policy["eval_return_mean"]
            return (
                f"kept {path.name} of env step {self.best_policy['env_step']}, written after the checkpoint (which "
                f"predates keeping the best policy in checkpoints); its return {self.best_return:.6g} is the run's best"
            )
        if self.best_policy is None:
            if not path.exists():
                return None
            path.unlink(missing_ok=True)
            return f"removed {path.name}: it was written after the checkpoint, which has no best policy yet"
        best_step, best_return = self.best_policy["env_step"], self.best_policy["eval_return_mean"]
        if stored is not None and (stored.get("env_step"), stored.get("eval_return_mean")) == (best_step, best_return):
            return None
        best_actor = copy.deepcopy(actor)
        best_actor.load_state_dict(self.best_policy["actor"])
        self.write_policy("best", best_actor, best_step, best_return)
        replaced = "" if stored is None else f" in place of the one of env step {stored.get('env_step')}"
        return f"restored {path.name} to the best policy as of the checkpoint (env step {best_step}){replaced}"


class CausalFits:
    """Every ``--causal-interval`` env steps once the replay holds ``--causal-samples`` transitions: fit the causal
    model on the latest ones, hand the weights to the agent, and log them (causal_weights.csv, TensorBoard)."""

    def __init__(
        self, config: TrainConfig, agent: CausallyWeighted, logger: RunLogger, action_names: list[str]
    ) -> None:
        self.interval = config.causal_interval
        self.samples = config.causal_samples
        self.method = config.causal_method
        self.target = config.causal_target
        self.time_limit = config.causal_time_limit
        self.agent = agent
        self.logger = logger
        # TensorBoard's causal/w0_thigh_joint; tasks without names keep causal/w0.
        self.tags = [
            f"causal/w{i}" + ("" if name == f"a{i}" else "_" + safe_name(name)) for i, name in enumerate(action_names)
        ]

    def due(self, env_step: int, replay_size: int) -> bool:
        return env_step % self.interval == 0 and replay_size >= self.samples

    def fit(self, replay: ReplayBuffer, env_step: int) -> None:
        try:
            fit = causal_weights(
                *replay.latest(self.samples), method=self.method, time_limit=self.time_limit, target=self.target
            )
        except CausalTimeLimitError as error:
            raise ConfigError(f"causal fit at env step {env_step}: {error}") from None
        self.agent.set_causal_weights(fit.weights)
        weights = {f"w{i}": float(w) for i, w in enumerate(fit.weights)}
        self.logger.causal.write(
            env_step=env_step,
            **weights,
            method=fit.method,
            seconds=fit.seconds,
            dropped_columns=len(fit.dropped),
            note=fit.note,
        )
        self.logger.scalars(
            {
                **dict(zip(self.tags, weights.values())),
                "causal/seconds": fit.seconds,
                "causal/dropped_columns": len(fit.dropped),
            },
            env_step,
        )


class LossLog:
    """The latest losses of the agent's updates: checked to be finite (after every update on a CPU; on a GPU only
    when written, since reading a loss there synchronises it) and written every ``--log-every`` env steps."""

    def __init__(
        self,
        config: TrainConfig,
        logger: RunLogger,
        device: torch.device,
        last_good: Callable[[], str],
        first_step: int = 0,
    ) -> None:
        """``first_step``: the env step this process starts at (a resumed run's), for the steps-per-second rate."""
        self.every = config.log_every
        self.algo = config.algo
        self.logger = logger
        self.check_every_update = device.type == "cpu"
        self.last_good = last_good
        self.pending: dict[str, torch.Tensor] = {}
        self.first_step = first_step
        self.started = time.perf_counter()

    def add(self, metrics: dict[str, torch.Tensor], env_step: int, updates: int) -> None:
        if not isinstance(metrics, dict) or not all(isinstance(value, torch.Tensor) for value in metrics.values()):
            got = (
                "{" + ", ".join(f"{name!r}: {type(value).__name__}" for name, value in metrics.items()) + "}"
                if isinstance(metrics, dict)
                else type(metrics).__name__
            )
            raise AgentError(
                f"--algo {self.algo}: the agent's update returned {got}; it must return its losses as a dict of "
                "tensors (name: torch.Tensor), which are read only when logged"
            )
        self.pending.update(metrics)
        if self.check_every_update:
            self.check_finite(metrics, env_step, updates)

    def due(self, env_step: int) -> bool:
        return env_step % self.every == 0 and bool(self.pending)

    def write(self, env_step: int, updates: int) -> None:
        if not self.check_every_update:
            self.check_finite(self.pending, env_step, updates)
        self.logger.scalars({name: float(value) for name, value in self.pending.items()}, env_step)
        seconds = time.perf_counter() - self.started
        self.logger.scalars({"train/steps_per_second": (env_step - self.first_step) / seconds}, env_step)

    def check_finite(self, metrics: dict[str, torch.Tensor], env_step: int, updates: int) -> None:
        for name, value in metrics.items():
            if not torch.isfinite(value).all():
                raise NonFiniteError(
                    f"{name} became {float(value)} at env step {env_step} (update {updates}); "
                    f"training stopped. Last good checkpoint: {self.last_good()}"
                )


class CheckpointSchedule:
    """A full-state checkpoint is due at the end of the first episode at or after each multiple of
    ``--checkpoint-every`` env steps (at an episode's end the environment needs no state of its own)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.next = every

    def due(self, env_step: int) -> bool:
        if env_step < self.next:
            return False
        self.next = (env_step // self.every + 1) * self.every
        return True


def finite_parameters_or_raise(agent: Agent, env_step: int, last_good: str) -> None:
    """Refuse to save parameters that are NaN or infinite: the last checkpoint stays the last good state."""
    for name, param in agent.trained_parameters():
        if not torch.isfinite(param).all():
            raise NonFiniteError(
                f"parameter {name} is not finite at env step {env_step}; not saving it. Last good checkpoint: {last_good}"
            )


__all__ = [
    "CausalFits",
    "CheckpointSchedule",
    "Evaluation",
    "LossLog",
    "NonFiniteError",
    "PolicyWriter",
    "finite_parameters_or_raise",
]
