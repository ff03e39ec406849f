"""Environments that break what ace-rl needs, one way each; registered when this module is imported
(``--env misbehaving_envs:NAME``, with tests/ on PYTHONPATH)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class _Base(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return np.zeros(3, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(3, dtype=np.float32), 0.0, False, False, {}


class UnboundedActions(_Base):
    action_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)


class DiscreteObservations(_Base):
    observation_space = gym.spaces.Discrete(4)


class NanFirstObservation(_Base):
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return np.array([0.0, np.nan, 0.0], dtype=np.float32), {}


class OldGymStep(_Base):
    """Gym's pre-0.26 step: four values (observation, reward, done, info)."""

    def step(self, action):
        return np.zeros(3, dtype=np.float32), 0.0, False, {}


class StrictConstructor(_Base):
    def __init__(self, size: int = 3) -> None:
        if size != 3:
            raise ValueError(f"size must be 3, got {size}")


for _name, _cls in [
    ("UnboundedActions-v0", UnboundedActions),
    ("DiscreteObservations-v0", DiscreteObservations),
    ("NanFirstObservation-v0", NanFirstObservation),
    ("OldGymStep-v0", OldGymStep),
    ("StrictConstructor-v0", StrictConstructor),
]:
    if _name not in gym.registry:
        # The passive checker would warn about these environments itself; ace-rl's own check is under test.
        gym.register(id=_name, entry_point=_cls, max_episode_steps=50, disable_env_checker=True)
