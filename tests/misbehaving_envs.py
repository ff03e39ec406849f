"""Environments that break what ace-rl needs, one way each; registered when this module is imported
(``--env misbehaving_envs:NAME``, with tests/ on PYTHONPATH)."""

from __future__ import annotations

import os
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


class EqualActionBounds(_Base):
    action_space = gym.spaces.Box(np.array([-1.0, 0.5]), np.array([1.0, 0.5]), dtype=np.float64)


class InvertedActionBounds(_Base):
    """Bounds that became inverted after the space was built (Box's own constructor refuses them)."""

    def __init__(self) -> None:
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space.low[1] = 2.0


class HugeObservations(_Base):
    """100,000 values per observation: a replay buffer of a million of them would need 800 GB."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(100_000,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return np.zeros(100_000, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(100_000, dtype=np.float32), 0.0, False, False, {}


class ResetRaises(_Base):
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        raise RuntimeError("the simulator did not start\nsecond line of its report")


class Faulty(_Base):
    """Behaves for ``after`` steps of this instance, then fails with ``fault``: "step-raises", "nan-reward",
    "nan-observation", "shape-change" or "none". ``seeds_from``: fail only in an instance reset with a seed at least
    this (a run's evaluation environment has the run's seed + 10,000). The environment variables FAULTY_FAULT and
    FAULTY_AFTER override the first two: an environment that changed after a run was trained on it."""

    def __init__(self, fault: str = "step-raises", after: int = 0, seeds_from: int | None = None) -> None:
        self.fault = os.environ.get("FAULTY_FAULT", fault)
        self.after = int(os.environ.get("FAULTY_AFTER", after))
        self.seeds_from = seeds_from
        self.armed = seeds_from is None
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None and self.seeds_from is not None:
            self.armed = seed >= self.seeds_from
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.steps += 1
        if not self.armed or self.steps <= self.after:
            return super().step(action)
        if self.fault == "none":
            return super().step(action)
        if self.fault == "step-raises":
            raise ValueError("boom\nthe rest of a long message")
        if self.fault == "nan-reward":
            return np.zeros(3, dtype=np.float32), float("nan"), False, False, {}
        if self.fault == "nan-observation":
            return np.array([0.0, np.nan, 0.0], dtype=np.float32), 0.0, False, False, {}
        if self.fault == "shape-change":
            return np.zeros(4, dtype=np.float32), 0.0, False, False, {}
        raise AssertionError(f"unknown fault {self.fault!r}")


for _name, _cls in [
    ("EqualActionBounds-v0", EqualActionBounds),
    ("InvertedActionBounds-v0", InvertedActionBounds),
    ("HugeObservations-v0", HugeObservations),
    ("ResetRaises-v0", ResetRaises),
    ("Faulty-v0", Faulty),
    ("UnboundedActions-v0", UnboundedActions),
    ("DiscreteObservations-v0", DiscreteObservations),
    ("NanFirstObservation-v0", NanFirstObservation),
    ("OldGymStep-v0", OldGymStep),
    ("StrictConstructor-v0", StrictConstructor),
]:
    if _name not in gym.registry:
        # The passive checker would warn about these environments itself; ace-rl's own check is under test.
        gym.register(id=_name, entry_point=_cls, max_episode_steps=50, disable_env_checker=True)
