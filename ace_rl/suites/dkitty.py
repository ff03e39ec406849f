"""ROBEL's D'Kitty on MuJoCo 3 (`DKittyStandRandom-v0`, `DKittyOrientRandom-v0`, `DKittyWalkRandom-v0`, and their
Fixed variants).

ROBEL 0.1.2 (Ahn et al., CoRL 2019) needs mujoco-py and gym<0.14, which cannot be installed next to MuJoCo 3 and
Gymnasium. Its models are vendored in `robel_assets/` (see the NOTICE there); the tasks are ported here from
ROBEL's definitions, and tests/test_dkitty.py checks them step for step against ROBEL's own code:

- Actions: 12 joint position targets in [-1, 1], mapped linearly to the joints' ranges (kept as float32, as
  ROBEL stores them), clipped to the ranges, then moved towards at most pi rad/s times the 0.1 s step from the
  joints' current positions. 40 MuJoCo steps of 2.5 ms per action (10 Hz); episodes of 80 steps.
- Stand: each episode starts from a joint pose drawn uniformly from the joint ranges (Fixed: a crouch), upright
  at the origin, then 140 MuJoCo steps of settling under gravity with the pose as target. Observation (61):
  torso position, its rxyz Euler angles, joint positions, torso velocity, its angular velocity, joint velocities,
  the last action, uprightness (the torso z-axis' z-component), and the joint pose error (minus the positions).
  Success: mean joint error under 15 degrees and uprightness above 0.9; termination when upside down.
- Orient: standing at the origin, turned by a random yaw in +/-60 degrees, with a target 1 m away at 120 to 240
  degrees from the y-axis (Fixed: 0 and 180 degrees). Observation (53): as Stand's up to uprightness, then the
  torso's facing direction and the direction to the target (xy). Success: facing within 0.087 rad and uprightness
  above 0.96; termination when uprightness drops under 0.9.
- Walk: standing at the origin, facing along y, with a target 1 to 2 m away within +/-60 degrees of that
  direction (Fixed: 2 m straight ahead); 160-step episodes. Observation (52): as Stand's up to uprightness, then
  the cosine between the facing direction and the direction to the target, and the target's offset (xy).
  Success: within 0.5 m of the target facing it within about 25 degrees (cosine over 0.9); termination as Orient.

ROBEL's quirks that change rewards are kept (docs/task-suites.md lists them): the centre-distance cost is the 3-D
norm of the torso position, height included (ROBEL takes `[:2]` of a batch of one, which keeps every coordinate);
Orient's and Walk's small bonus is 5 when either condition holds, not 5 per condition (ROBEL adds two booleans, which NumPy
treats as "or"); the direction to the target is divided by the norm of itself plus 1e-8 per component.

Where ROBEL gives nothing to copy: the arccos of Orient's angle is guarded against a cosine rounded past 1, and a
step in which MuJoCo finds the simulation unstable (and resets it to the model's standing start) ends the episode
as a fall, with `info["unstable"]`; ROBEL's simulators raised an exception there.

The ids and their registration are here, without MuJoCo, so that `import ace_rl.envs` imports no MuJoCo (whose
import fails on a bad MUJOCO_GL before ace-rl can say so in one line); the tasks are in `dkitty_tasks`, which
Gymnasium imports when one is made.
"""

from __future__ import annotations

import gymnasium as gym

PREFIX = "DKitty"
SUCCESS_KEY = "success"
EPISODE_STEPS = 80
WALK_EPISODE_STEPS = 160

ENV_IDS = (
    "DKittyStandRandom-v0",
    "DKittyStandFixed-v0",
    "DKittyOrientRandom-v0",
    "DKittyOrientFixed-v0",
    "DKittyWalkRandom-v0",
    "DKittyWalkFixed-v0",
)


def is_dkitty_id(env_id: str) -> bool:
    """Whether ``env_id`` names (or mistypes) a D'Kitty task."""
    return env_id.startswith(PREFIX)


def register() -> None:
    """Register the D'Kitty ids with Gymnasium (80-step episodes, Walk 160), once."""
    tasks = {
        "DKittyStandRandom-v0": ("DKittyStand", False, EPISODE_STEPS),
        "DKittyStandFixed-v0": ("DKittyStand", True, EPISODE_STEPS),
        "DKittyOrientRandom-v0": ("DKittyOrient", False, EPISODE_STEPS),
        "DKittyOrientFixed-v0": ("DKittyOrient", True, EPISODE_STEPS),
        "DKittyWalkRandom-v0": ("DKittyWalk", False, WALK_EPISODE_STEPS),
        "DKittyWalkFixed-v0": ("DKittyWalk", True, WALK_EPISODE_STEPS),
    }
    for env_id, (task, fixed, steps) in tasks.items():
        if env_id not in gym.registry:
            gym.register(
                env_id,
                entry_point=f"ace_rl.suites.dkitty_tasks:{task}",
                max_episode_steps=steps,
                kwargs={"fixed": fixed},
            )


def known_names() -> list[str]:
    return list(ENV_IDS)
