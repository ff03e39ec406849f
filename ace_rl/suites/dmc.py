"""The DeepMind Control Suite as a Gymnasium environment (`dmc:DOMAIN-TASK`, for example `dmc:walker-run`).

Written here rather than taken from shimmy: the conversion is short (flatten the observation dict, rescale
the action, map time limits to truncation, seed through `reset`), and shimmy's dm_control wrapper would pin
its own versions of dm_control and Gymnasium on top of the ones Meta-World already constrains.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np

EPISODE_STEPS = 1000
"""Steps per episode: every dm_control suite task runs 1000 control steps and ends by its time limit."""


def import_suite() -> Any:
    """The `dm_control.suite` module (ImportError when dm_control is not installed)."""
    with warnings.catch_warnings():
        # dm_control picks its OpenGL back-end at import time (MUJOCO_GL; unset: GLFW, which only warns without a
        # display). Training never renders; ace_rl.video sets MUJOCO_GL before a rendering process imports this.
        warnings.filterwarnings("ignore", message=".*DISPLAY.*")
        from dm_control import suite
    return suite


def known_names() -> list[str]:
    """Every `DOMAIN-TASK` of the suite, for example `walker-run` and `ball_in_cup-catch`."""
    return [f"{domain}-{task}" for domain, task in import_suite().ALL_TASKS]


def split_name(name: str) -> tuple[str, str]:
    """`ball_in_cup-catch` -> (`ball_in_cup`, `catch`): domains and tasks hold underscores, never dashes."""
    domain, _, task = name.partition("-")
    return domain, task


class DMControlEnv(gym.Env[np.ndarray, np.ndarray]):
    """One dm_control suite task behind the Gymnasium API.

    - Observations: the task's observation dict flattened into one float32 vector, keys in the order of the
      task's observation spec (the order the task itself defines, the same on every run).
    - Actions: the Box [-1, 1]^n, rescaled linearly to the task's action bounds.
    - Episodes: 1000 steps, ending in truncation (a time limit), never in termination; a task that does
      report a terminal state (discount 0, only `lqr` in the suite) terminates.
    - Seeding: `reset(seed=s)` reseeds the task's RandomState in place, as `task_kwargs={"random": s}` would;
      resets without a seed continue that random stream.
    - Rendering: with `render_mode="rgb_array"`, `render()` returns the 480 x 480 view of camera 0.
    """

    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012 - gymnasium.Env types it as an instance variable: ClassVar fails mypy
    render_size = 480

    dm_env: Any
    """The wrapped dm_control environment (its `physics` and `task` included)."""

    def __init__(self, domain: str, task: str, render_mode: str | None = None) -> None:
        self.dm_env = import_suite().load(domain, task)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": 1.0 / self.dm_env.control_timestep()}
        self.name = f"{domain}-{task}"
        observation_spec = self.dm_env.observation_spec()
        self._observation_keys = list(observation_spec)
        size = sum(int(np.prod(spec.shape)) for spec in observation_spec.values())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)
        action_spec = self.dm_env.action_spec()
        self._action_low = np.broadcast_to(action_spec.minimum, action_spec.shape).astype(np.float64)
        self._action_high = np.broadcast_to(action_spec.maximum, action_spec.shape).astype(np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=action_spec.shape, dtype=np.float32)
        self.episode_steps = EPISODE_STEPS
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.dm_env.task.random.seed(seed)
        self._steps = 0
        timestep = self.dm_env.reset()
        return self._flatten(timestep.observation), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        unit = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        timestep = self.dm_env.step(self._action_low + (unit + 1.0) * 0.5 * (self._action_high - self._action_low))
        self._steps += 1
        terminated = bool(timestep.last() and timestep.discount == 0.0)
        truncated = not terminated and (timestep.last() or self._steps >= self.episode_steps)
        return self._flatten(timestep.observation), float(timestep.reward or 0.0), terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.dm_env.physics.render(height=self.render_size, width=self.render_size, camera_id=0)

    def close(self) -> None:
        self.dm_env.close()

    def _flatten(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        parts = [np.asarray(observation[key], dtype=np.float32).ravel() for key in self._observation_keys]
        return np.concatenate(parts)


def make(name: str, render_mode: str | None = None) -> DMControlEnv:
    """The environment of `DOMAIN-TASK` (the caller checks the name against `known_names()`)."""
    return DMControlEnv(*split_name(name), render_mode=render_mode)
