"""A task's action dimensions: their names, and distractor dimensions that the environment never sees.

Names label the causal weights (the report's legend, TensorBoard's tags); a run stores them in ``actions.json``
(the CSV columns stay ``w0..``). They are the actuators' names where the task has them (Gymnasium MuJoCo, Adroit,
Shadow Hand and dm_control through their MuJoCo models), x, y, z, gripper for Meta-World, and ``a0..`` otherwise.

``--distractor-actions K`` wraps the environment in `DistractorActions`: the agent acts in A + K dimensions,
the environment receives the first A, and the causal fit sees all A + K. A distractor has, by construction, no
effect on anything, so its fitted coefficient should be 0: ground truth for the causal model on a real task.
"""

from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
import numpy as np

DISTRACTOR = "distractor"
METAWORLD_NAMES = ("x", "y", "z", "gripper")


class DistractorActions(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """Append ``count`` action dimensions in [-1, 1] that the wrapped environment ignores."""

    def __init__(self, env: gym.Env, count: int) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, count=count)
        gym.ActionWrapper.__init__(self, env)
        space = env.action_space
        assert isinstance(space, gym.spaces.Box)
        self.real_dimensions = int(space.shape[0])
        self.count = count
        self.action_space = gym.spaces.Box(
            np.concatenate([space.low, -np.ones(count)]).astype(space.dtype),
            np.concatenate([space.high, np.ones(count)]).astype(space.dtype),
            dtype=space.dtype,
        )

    def action(self, action: Any) -> np.ndarray:
        return np.asarray(action)[..., : self.real_dimensions]


def action_box(env: gym.Env) -> gym.spaces.Box:
    """The action space of ``env``: a Box, as ace_rl.envs.make_env checks of every task it builds."""
    return cast(gym.spaces.Box, env.action_space)


def distractor_count(env: gym.Env) -> int:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, DistractorActions):
            return env.count
        env = env.env
    return 0


def action_names(env: gym.Env) -> list[str]:
    """One name per action dimension of ``env`` (as make_env built it): the task's own, then ``distractor0..``."""
    distractors = distractor_count(env)
    real = int(action_box(env).shape[0]) - distractors
    names = _task_names(env.unwrapped, real) or [f"a{i}" for i in range(real)]
    names = [name or f"a{i}" for i, name in enumerate(names)]
    if len(set(names)) < len(names):  # repeated names would merge in a legend: keep them apart by index
        names = [f"{i}:{name}" for i, name in enumerate(names)]
    return names + [f"{DISTRACTOR}{i}" for i in range(distractors)]


def _task_names(base: Any, count: int) -> list[str] | None:
    if type(base).__module__.startswith("metaworld") and count == len(METAWORLD_NAMES):
        return list(METAWORLD_NAMES)
    dm_env = getattr(base, "dm_env", None)  # ace_rl.suites.dmc.DMControlEnv
    if dm_env is not None:
        model = dm_env.physics.model
        names = [model.id2name(i, "actuator") for i in range(model.nu)]
        return names if len(names) == count else None
    model = getattr(base, "model", None)  # Gymnasium MuJoCo, Adroit, Shadow Hand: a mujoco.MjModel
    if model is not None and type(model).__name__ == "MjModel" and model.nu == count:
        return [_actuator_name(model, i) for i in range(model.nu)]
    return None


def _actuator_name(model: Any, index: int) -> str:
    """An actuator's name, or (Hopper, Walker2d, Ant: unnamed motors) the name of the joint it drives."""
    actuator = model.actuator(index)
    if actuator.name:
        return str(actuator.name)
    if int(actuator.trntype[0]) == 0:  # mjTRN_JOINT
        return str(model.joint(int(actuator.trnid[0])).name)
    return ""
