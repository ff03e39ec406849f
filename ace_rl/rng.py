"""Seeding and capturing every random-number state a run draws from, so that a resumed run continues exactly."""

from __future__ import annotations

import random
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch

from ace_rl.suites.dmc import DMControlEnv


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _random_state_to_list(state: tuple) -> list:
    """A NumPy RandomState state as plain Python values (checkpoints are loaded with weights_only=True)."""
    kind, keys, position, has_gauss, cached = state
    return [kind, keys.tolist(), position, has_gauss, cached]


def _random_state_from_list(values: list) -> tuple:
    kind, keys, position, has_gauss, cached = values
    return (kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached)


def capture_global_rng() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": _random_state_to_list(cast(tuple, np.random.get_state())),  # legacy=True: MT19937's tuple
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_global_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_random_state_from_list(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def capture_env_rng(env: gym.Env) -> dict[str, Any]:
    """The environment's own generator (used by its resets), its action space's (random actions), and for
    dm_control the task's RandomState (which draws its initial states)."""
    state: dict[str, Any] = {
        "env": env.unwrapped.np_random.bit_generator.state,
        "action_space": env.action_space.np_random.bit_generator.state,
    }
    task = env.unwrapped
    if isinstance(task, DMControlEnv):
        state["dm_control_task"] = _random_state_to_list(task.dm_env.task.random.get_state())
    return state


def restore_env_rng(env: gym.Env, state: dict[str, Any]) -> None:
    env.unwrapped.np_random.bit_generator.state = state["env"]
    env.action_space.np_random.bit_generator.state = state["action_space"]
    if "dm_control_task" in state:  # captured from a DMControlEnv
        cast(DMControlEnv, env.unwrapped).dm_env.task.random.set_state(
            _random_state_from_list(state["dm_control_task"])
        )
