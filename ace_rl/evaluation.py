"""Deterministic evaluation: of the agent during training, and of a saved run's checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import gymnasium as gym
import numpy as np
import torch

from ace_rl.agents import PolicyNetwork
from ace_rl.checkpoint import CHECKPOINT_NAMES, CheckpointError, load_policy
from ace_rl.envs import checked_reset, checked_step, episode_steps, has_success, make_env, seed_env
from ace_rl.rundir import RunDir
from ace_rl.trust import CodeTrust

Policy = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Episodes:
    returns: np.ndarray
    successes: np.ndarray | None  # per episode: did the task report success at any step; None without a signal

    @property
    def success_rate(self) -> float | None:
        return None if self.successes is None else float(self.successes.mean())


# An evaluation episode of an environment without a time limit of its own ends after this many steps.
EVAL_MAX_EPISODE_STEPS = 1000


def episode_step_limit(env: gym.Env) -> int:
    """The environment's own time limit (`envs.episode_steps`), else EVAL_MAX_EPISODE_STEPS."""
    return episode_steps(env) or EVAL_MAX_EPISODE_STEPS


def run_episodes(policy: Policy, env: gym.Env, episodes: int, env_id: str | None = None) -> Episodes:
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
    return Episodes(returns, successes if has_success(env) else None)


@dataclass(frozen=True)
class EvalResult:
    env: str
    checkpoint: Path
    episodes: Episodes

    @property
    def mean(self) -> float:
        return float(self.episodes.returns.mean())

    @property
    def std(self) -> float:
        return float(self.episodes.returns.std())


def evaluate_run(
    run_dir: Path,
    checkpoint: str = "best",
    episodes: int = 10,
    seed: int = 0,
    make: Callable[..., gym.Env] = make_env,
    trust: CodeTrust | None = None,
) -> EvalResult:
    """Load a run's policy checkpoint and run it deterministically on a freshly seeded environment.

    ``make(env_id, reward=..., env_kwargs=..., distractor_actions=...)`` builds that environment (`make_env`; ace_rl.video passes one that records it).
    The checkpoint is data: a ``module:NAME`` environment or agent it names is imported only as ``trust`` allows.
    """
    trust = CodeTrust.given() if trust is None else trust
    if checkpoint not in CHECKPOINT_NAMES:
        raise CheckpointError(f"unknown checkpoint {checkpoint!r}; accepted: {', '.join(CHECKPOINT_NAMES)}")
    if episodes <= 0:
        raise CheckpointError(f"--episodes must be a positive integer, got {episodes}")
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory at {run_dir}")
    path = RunDir(run_dir).policy(checkpoint)
    actor, payload = load_policy(path, trust=trust)
    network = cast(PolicyNetwork, actor)
    trust.check("env", payload["env"], f"policy file {path}")
    env = make(
        payload["env"],
        reward=payload.get("reward", "dense"),
        env_kwargs=payload.get("env_kwargs") or None,
        distractor_actions=int(payload.get("distractor_actions", 0)),
    )
    seed_env(env, seed)

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return network.deterministic(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0].numpy()

    try:
        result = run_episodes(policy, env, episodes, payload["env"])
    finally:
        env.close()
    return EvalResult(env=payload["env"], checkpoint=path, episodes=result)
