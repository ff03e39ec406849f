"""Environment construction: a Gymnasium id in, a seeded environment with flat float observations out."""

from __future__ import annotations

import difflib
import math

import gymnasium as gym
import numpy as np


class EnvError(ValueError):
    """The environment id is unknown or the environment cannot be trained on."""


def check_env_id(env_id: str) -> None:
    """Raise EnvError naming the closest known ids when ``env_id`` is not registered with Gymnasium."""
    if env_id in gym.registry:
        return
    known = sorted(gym.registry.keys())
    close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; run `python -c \"import gymnasium; gymnasium.pprint_registry()\"` for the list"
    raise EnvError(f"unknown environment {env_id!r} (expected a Gymnasium id such as Hopper-v5){hint}")


def make_env(env_id: str) -> gym.Env:
    """Build the environment; observations are flattened to one float vector (Dict spaces included)."""
    check_env_id(env_id)
    try:
        env = gym.make(env_id)
    except gym.error.DependencyNotInstalled as error:
        raise EnvError(f"environment {env_id!r} needs a package that is not installed: {error}") from None
    if not isinstance(env.action_space, gym.spaces.Box):
        env.close()
        raise EnvError(
            f"environment {env_id!r} has {type(env.action_space).__name__} actions; ACE needs continuous (Box) actions"
        )
    if not (np.all(np.isfinite(env.action_space.low)) and np.all(np.isfinite(env.action_space.high))):
        env.close()
        raise EnvError(f"environment {env_id!r} has unbounded actions; ACE needs finite action bounds")
    if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        env = gym.wrappers.FlattenObservation(env)
    return env


def seed_env(env: gym.Env, seed: int) -> np.ndarray:
    """Seed the environment once (its first reset and its action space); later resets continue its RNG."""
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    return obs


def observation_size(env: gym.Env) -> int:
    return int(math.prod(env.observation_space.shape))
