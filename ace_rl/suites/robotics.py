"""Gymnasium-Robotics: the Adroit hands (`AdroitHandDoor-v1`, ...) and Shadow Hand manipulation
(`HandManipulateBlockDense-v1`, ...), plus the package's other goal-conditioned tasks.

Their ids are plain Gymnasium ids, registered when `gymnasium_robotics` is imported.
"""

from __future__ import annotations

import contextlib
import io

import gymnasium as gym

# Id prefixes of the environments that gymnasium_robotics registers (the multi-agent MaMuJoCo ones excepted),
# kept short so that a mistyped id still reaches the package's registry for suggestions.
ROBOTICS_PREFIXES = ("Adroit", "Hand", "Fetch", "PointMaze", "AntMaze", "FrankaKitchen")

# Which info key carries the task's success flag, by id prefix; tasks not listed have none.
_SUCCESS_KEYS = {
    "AdroitHand": "success",
    "HandManipulate": "is_success",
    "HandReach": "is_success",
    "Fetch": "is_success",
    "PointMaze": "success",
    "AntMaze": "success",
}


def is_robotics_id(env_id: str) -> bool:
    """Whether `env_id` names (or mistypes) an environment of gymnasium_robotics."""
    return env_id.startswith(ROBOTICS_PREFIXES)


def register() -> None:
    """Import gymnasium_robotics so that its ids are in Gymnasium's registry (ImportError when not installed).

    The import prints a notice to stderr (Farama's notification that the Adroit `*Dense-v1` rewards changed
    in gymnasium-robotics 1.2.1); it is held back so that error messages stay one line.
    """
    with contextlib.redirect_stderr(io.StringIO()):
        import gymnasium_robotics
    gym.register_envs(gymnasium_robotics)


def success_key(env_id: str) -> str | None:
    """The info key of the success flag of `env_id` (`success` or `is_success`), None when it has none."""
    for prefix, key in _SUCCESS_KEYS.items():
        if env_id.startswith(prefix):
            return key
    return None
