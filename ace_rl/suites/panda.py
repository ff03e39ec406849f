"""panda-gym: the Franka Emika Panda arm tasks on PyBullet (`PandaReachJoints-v3`, `PandaPush-v3`, ...).

Their ids are plain Gymnasium ids, registered when `panda_gym` is imported: `Panda{TASK}{CONTROL}{REWARD}-v3`
with TASK one of Reach, Slide, Push, PickAndPlace, Stack, Flip; CONTROL empty (end-effector moves) or `Joints`
(joint moves); REWARD empty (panda-gym's sparse reward) or `Dense` (minus the distance to the goal). Episodes
last 50 steps (Stack: 100) and terminate when the goal is reached; `info["is_success"]` is the success flag.

Seeding: panda-gym draws each goal from `env.task.np_random`, which its `reset` replaces on every call by a
generator seeded with the seed passed in; a reset without a seed therefore draws from fresh OS entropy and no
two runs would see the same goals. `PandaSeeding` passes every reset a seed drawn from the environment's own
`np_random`, so the goals follow from the first seed, and capturing `env.unwrapped.np_random` (as ace_rl.rng
does for every environment) is all a checkpoint needs to replay the next episode.

Rendering uses PyBullet's built-in TinyRenderer (software, no OpenGL, works headless): 720 x 480 frames.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator
from typing import Any

import gymnasium as gym

PREFIX = "Panda"
SUCCESS_KEY = "is_success"
_SEED_BOUND = 2**32
_LIBC = ctypes.CDLL(None)


def is_panda_id(env_id: str) -> bool:
    """Whether ``env_id`` names (or mistypes) a panda-gym environment."""
    return env_id.startswith(PREFIX)


@contextlib.contextmanager
def _quiet_c_output() -> Iterator[None]:
    """Send what C code writes to stdout and stderr to /dev/null meanwhile: PyBullet prints its build time and
    its connection options whenever it starts a simulation, which would clutter ace-rl's output (and its
    `ace-rl envs` table). Python exceptions raised inside still propagate."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        _LIBC.fflush(None)  # C's buffered stdout, before it is pointed back
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def register() -> None:
    """Import panda_gym so that its ids are in Gymnasium's registry (ImportError when not installed)."""
    with _quiet_c_output():
        import panda_gym  # noqa: F401


def known_names() -> list[str]:
    """Every panda-gym id, for example `PandaReachJoints-v3`."""
    register()
    import panda_gym

    return list(panda_gym.ENV_IDS)


def missing_asset(env_id: str) -> str | None:
    """Why ``env_id`` cannot be built, or None: the panda-gym 3.0.7 wheel ships without the cube texture
    (`colored_cube.png`) that the Flip tasks load, and PyBullet then fails with a bare "Error loading texture"."""
    if not env_id.startswith(f"{PREFIX}Flip"):
        return None
    import panda_gym.assets

    texture = os.path.join(panda_gym.assets.get_data_path(), "colored_cube.png")
    if os.path.isfile(texture):
        return None
    return f"the installed panda-gym lacks {texture}, the texture its Flip tasks load; use another Panda task"


class PandaSeeding(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Every reset seeds panda-gym's task from the environment's own generator (see the module docstring).

    ``reset(seed=s)`` seeds as panda-gym does; a reset without a seed draws the next seed from
    ``env.unwrapped.np_random``, which panda-gym uses for nothing else.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        if seed is None:
            seed = int(self.env.unwrapped.np_random.integers(_SEED_BOUND))
        return self.env.reset(seed=seed, options=options)


def make(env_id: str, render_mode: str | None = None) -> gym.Env:
    """The environment of ``env_id`` (the caller checks the id against `known_names()`).

    PyBullet runs in DIRECT mode (no window) with either render mode; ``render()`` returns RGB frames.
    """
    register()
    kwargs: dict[str, Any] = {"renderer": "Tiny"}
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    with _quiet_c_output():
        env = gym.make(env_id, **kwargs)
    return PandaSeeding(env)
