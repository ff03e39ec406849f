"""A small continuous-control task of ace-rl's own, registered as ``PointReach-v0`` when this module is imported.

A point mass on a plane is pushed towards a goal. Its action is a force whose bounds are deliberately not
[-1, 1] (x in [-2, 2], y in [-0.5, 1.5]), so that a policy that forgot to rescale its tanh output to the action
bounds is caught. It needs nothing beyond Gymnasium and NumPy (no MuJoCo) and learns within a few thousand steps.

    ace-rl train --env examples.point_reach:PointReach-v0 --env-kwargs '{"goal": [0.5, -0.3]}' --preset small

Constructor arguments: ``goal`` (the target position, two numbers in [-1, 1]), ``dict_observations`` (observe a
goal-conditioned Dict ``{"observation", "achieved_goal", "desired_goal"}`` instead of one vector) and
``render_mode`` (``rgb_array``: a small top-down picture).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "PointReach-v0"
EPISODE_STEPS = 100
DT = 0.1
FRICTION = 0.8  # the velocity kept from one step to the next
FORCE_LOW = np.array([-2.0, -0.5], dtype=np.float32)
FORCE_HIGH = np.array([2.0, 1.5], dtype=np.float32)
ARENA = 1.0  # positions stay in [-ARENA, ARENA]


class PointReach(gym.Env):
    """Reward: minus the distance to the goal, minus a small cost of force; success within 0.05 of the goal."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 - gymnasium.Env types it as an instance variable: ClassVar fails mypy

    def __init__(
        self, goal: Sequence[float] = (0.6, 0.4), dict_observations: bool = False, render_mode: str | None = None
    ) -> None:
        self.goal = np.asarray(goal, dtype=np.float32)
        if self.goal.shape != (2,) or not np.all(np.abs(self.goal) <= ARENA):
            raise ValueError(f"goal must be two numbers in [-{ARENA}, {ARENA}], got {list(goal)}")
        self.dict_observations = dict_observations
        self.render_mode = render_mode
        self.action_space = gym.spaces.Box(FORCE_LOW, FORCE_HIGH, dtype=np.float32)
        state_space = gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
        goal_space = gym.spaces.Box(-ARENA, ARENA, shape=(2,), dtype=np.float32)
        if dict_observations:
            self.observation_space = gym.spaces.Dict(
                {"observation": state_space, "achieved_goal": goal_space, "desired_goal": goal_space}
            )
        else:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(6,), dtype=np.float32)
        self.position: np.ndarray = np.zeros(2, dtype=np.float32)
        self.velocity: np.ndarray = np.zeros(2, dtype=np.float32)

    def _observation(self) -> Any:
        state = np.concatenate([self.position, self.velocity]).astype(np.float32)
        if self.dict_observations:
            return {"observation": state, "achieved_goal": self.position.copy(), "desired_goal": self.goal.copy()}
        return np.concatenate([state, self.goal]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-ARENA, ARENA, size=2).astype(np.float32)
        self.velocity = np.zeros(2, dtype=np.float32)
        return self._observation(), {}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        force = np.clip(np.asarray(action, dtype=np.float32), FORCE_LOW, FORCE_HIGH)
        self.velocity = (FRICTION * self.velocity + DT * force).astype(np.float32)
        self.position = np.clip(self.position + DT * self.velocity, -ARENA, ARENA).astype(np.float32)
        distance = float(np.linalg.norm(self.position - self.goal))
        reward = -distance - 0.01 * float(np.square(force).sum())
        return self._observation(), reward, False, False, {"is_success": distance < 0.05}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        size = 64
        frame = np.full((size, size, 3), 255, dtype=np.uint8)

        def pixel(point: np.ndarray) -> tuple[int, int]:
            column, row = ((point / ARENA + 1) / 2 * (size - 1)).round().astype(int)
            return size - 1 - row, column

        for point, colour in ((self.goal, (0, 160, 0)), (self.position, (200, 0, 0))):
            row, column = pixel(point)
            frame[max(row - 2, 0) : row + 3, max(column - 2, 0) : column + 3] = colour
        return frame


if ENV_ID not in gym.registry:
    # Gymnasium's EnvCreator type admits only a callable of **kwargs, though a class is a documented entry point.
    gym.register(id=ENV_ID, entry_point=PointReach, max_episode_steps=EPISODE_STEPS)  # type: ignore[arg-type]
