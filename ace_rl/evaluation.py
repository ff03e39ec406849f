"""Deterministic evaluation, one way for every caller: `run_episodes` plays a policy's episodes on an environment and
gives their `Evaluation`. The training loop runs it on its evaluation environment (ace_rl.loop_parts.Evaluation);
`ace_rl.evaluate` (ace_rl.api), and so `ace-rl eval`, on the environment a saved policy rebuilds from its metadata
(ace_rl.policy.Policy.make_env)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from ace_rl.envs import checked_reset, checked_step, episode_steps, has_success

ActionFunction = Callable[[np.ndarray], np.ndarray]
"""A policy as evaluation plays it: flat observation in, action out."""


@dataclass(frozen=True)
class Evaluation:
    """Returns of deterministic episodes; the success rate where the task reports success."""

    returns: np.ndarray
    successes: np.ndarray | None
    """Per episode: did the task report success at any step; None for a task without a success signal."""

    @property
    def success_rate(self) -> float | None:
        return None if self.successes is None else float(self.successes.mean())

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def std(self) -> float:
        return float(self.returns.std())


# An evaluation episode of an environment without a time limit of its own ends after this many steps.
EVAL_MAX_EPISODE_STEPS = 1000


def episode_step_limit(env: gym.Env) -> int:
    """The environment's own time limit (`envs.episode_steps`), else EVAL_MAX_EPISODE_STEPS."""
    return episode_steps(env) or EVAL_MAX_EPISODE_STEPS


def run_episodes(policy: ActionFunction, env: gym.Env, episodes: int, env_id: str | None = None) -> Evaluation:
    """Returns (and successes) of ``episodes`` episodes, each ended by the task or by `episode_step_limit`;
    the environment continues its own random stream. A fault of the environment (an exception, a NaN reward or
    observation) is one EnvError line naming it as ``env_id`` (by default its registered id), never a NaN return."""
    name = env_id or (env.spec.id if env.spec is not None else type(env.unwrapped).__name__)
    returns = np.zeros(episodes)
    successes = np.zeros(episodes, dtype=bool)
    step_limit = episode_step_limit(env)
    for episode in range(episodes):
        obs = checked_reset(env, name, f"in evaluation episode {episode + 1}")
        for step in range(step_limit):
            obs, reward, terminated, truncated, info = checked_step(
                env, policy(obs), name, f"in evaluation episode {episode + 1}, step {step + 1}"
            )
            returns[episode] += reward
            successes[episode] |= bool(info.get("success", False))
            if terminated or truncated:
                break
    return Evaluation(returns, successes if has_success(env) else None)
