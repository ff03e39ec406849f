"""Meta-World v3 single tasks with the goal in the observation (`metaworld:TASK`, e.g. `metaworld:assembly-v3`).

Built through Meta-World's own Gymnasium registration, `gym.make("Meta-World/goal_observable", env_name=TASK)`:
the single-task environment with the goal position observable, the `ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE`
class that the official ACE code used (in its v2 form). Episodes last 200 steps as in ACE and end in
truncation; `info["success"]` is Meta-World's own success flag.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

EPISODE_STEPS = 200
"""Steps per episode, as in ACE (Meta-World's own default is 500)."""

_GOAL_OBSERVABLE_SUFFIX = "-goal-observable"


def known_names() -> list[str]:
    """Every Meta-World v3 task name, for example `button-press-v3`."""
    import metaworld

    return [name.removesuffix(_GOAL_OBSERVABLE_SUFFIX) for name in metaworld.ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE]


class MetaWorldTask(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Seeding and per-episode task sampling for a goal-observable Meta-World environment.

    At every reset the object and goal positions are drawn anew from the environment's own random generator
    (Meta-World's `seeded_rand_vec` mode), so the goal, which the policy sees, varies from episode to episode,
    and a training and an evaluation environment with different seeds face the same task distribution.
    `reset(seed=s)` reseeds that generator through Meta-World's `seed()` (its `reset` ignores a seed);
    later resets continue the stream.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        task: Any = env.unwrapped  # Meta-World's SawyerXYZEnv: these attributes are its own
        task._freeze_rand_vec = False  # sample new object and goal positions at every reset ...
        task.seeded_rand_vec = True  # ... from the environment's np_random rather than NumPy's global RNG
        # The registered space was built while the goal was still hidden (goal bounds 0); this one has the goal's.
        self.observation_space = task.sawyer_observation_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            task: Any = self.env.unwrapped
            task.seed(seed)
        return self.env.reset(options=options)


def make(name: str, render_mode: str | None = None) -> gym.Env:
    """The environment of task `name` (the caller checks the name against `known_names()`).

    Meta-World's registration takes no render mode; its environments read `render_mode` when they render, so it
    is set on the built environment (480 x 480 frames from MuJoCo's free camera).
    """
    import metaworld  # noqa: F401  (registers the Meta-World/* ids)

    # seed=0 only fixes how the registration builds the task (and keeps NumPy's global RNG untouched);
    # `reset(seed=...)` decides every episode that follows. The env checker is off because it would only
    # warn about the registered observation space, which MetaWorldTask replaces.
    env = gym.make(
        "Meta-World/goal_observable", env_name=name, seed=0, max_episode_steps=EPISODE_STEPS, disable_env_checker=True
    )
    env.unwrapped.render_mode = render_mode
    return MetaWorldTask(env)
