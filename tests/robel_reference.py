"""ROBEL 0.1.2's own D'Kitty task code, run on MuJoCo 3 and Gymnasium: the reference that tests/test_dkitty.py
compares ace-rl's port with.

ROBEL's wheel pins gym<0.14 and mujoco-py<2.1, so it is not installed. `prepare_robel` unpacks the wheels of
robel==0.1.2 and transforms3d (its rotation library) from a cache directory, filled once with
`pip download robel==0.1.2 transforms3d==0.4.2 --no-deps`, and changes only what today's stack refuses:

- the XML declaration of robel's five D'Kitty model files, which follows a licence comment (MuJoCo 3 rejects it);
- `collections.Mapping` (gone from Python 3.10) becomes `collections.abc.Mapping`;
- `gym.envs.registration.registry.env_specs` (old gym) becomes the registry itself (Gymnasium's is a dict);
- dm_control's `mju_str2Type` takes the type name as text, not bytes.

ROBEL runs on its dm_control back-end (its mujoco-py one cannot be installed), and `gym` is Gymnasium under the
old name (this script puts it in sys.modules before robel is imported). Run as a script, in a process of its
own so that ROBEL's registrations never meet ace-rl's:

    python tests/robel_reference.py ROBEL_DIR TASK SEED ACTIONS.npy OUT.npz [face]

It resets the task with SEED (ROBEL's `seed`, then `reset`), steps it through the actions, resets whenever an
episode terminates or reaches its length (80 steps, Walk 160), and saves every observation, reward, termination and success flag. With
`face` (Orient, Walk), each reset is followed by turning the D'Kitty to face its target (Walk: and moving it close
to it; `face_target`), so that holding still succeeds and the success flags are tested on both values.
"""

from __future__ import annotations

import math
import subprocess
import sys
import zipfile
from pathlib import Path

ROBEL_WHEEL = "robel-0.1.2-py3-none-any.whl"
TRANSFORMS3D_WHEEL = "transforms3d-0.4.2-py3-none-any.whl"
REQUIREMENTS = ("robel==0.1.2", "transforms3d==0.4.2")
EPISODE_STEPS = {"Stand": 80, "Orient": 80, "Walk": 160}

TASK_CLASSES = {
    "DKittyStandRandom-v0": ("robel.dkitty.stand", "DKittyStandRandom"),
    "DKittyStandFixed-v0": ("robel.dkitty.stand", "DKittyStandFixed"),
    "DKittyOrientRandom-v0": ("robel.dkitty.orient", "DKittyOrientRandom"),
    "DKittyOrientFixed-v0": ("robel.dkitty.orient", "DKittyOrientFixed"),
    "DKittyWalkRandom-v0": ("robel.dkitty.walk", "DKittyWalkRandom"),
    "DKittyWalkFixed-v0": ("robel.dkitty.walk", "DKittyWalkFixed"),
}

_XML_FILES = (
    "robel/dkitty/assets/dkitty_stand-v0.xml",
    "robel/dkitty/assets/dkitty_orient-v0.xml",
    "robel/dkitty/assets/dkitty_walk-v0.xml",
    "robel/robel-scenes/scenes/basic_scene.xml",
    "robel/robel-scenes/dkitty/assets/dependenciesA_xh-v2.1.xml",
    "robel/robel-scenes/dkitty/assets/chainA_xh-v2.1.xml",
)
XML_DECLARATION = '<?xml version="1.0"?>\n'
_CODE_CHANGES = (
    ("robel/robot_env.py", "collections.Mapping", "collections.abc.Mapping"),
    ("robel/utils/registration.py", "gym_reg.registry.env_specs", "gym_reg.registry"),
    ("robel/simulation/dm_sim_scene.py", "mju_str2Type(type_name.encode())", "mju_str2Type(type_name)"),
)


def facing_yaw(target_xy) -> float:
    """The torso yaw (its z hinge) at which a D'Kitty at the origin faces ``target_xy``: it faces along its
    y-axis, (-sin yaw, cos yaw)."""
    return math.atan2(-target_xy[0], target_xy[1])


def face_target(qpos, target_xy, walk: bool) -> None:
    """Turn a D'Kitty at the origin to face its target (qpos: the model's, changed in place); ``walk``: also move
    it to 0.3 m short of the target, where holding still succeeds."""
    if walk:
        shortfall = 0.3 / math.hypot(target_xy[0], target_xy[1])
        qpos[0], qpos[1] = target_xy[0] * (1 - shortfall), target_xy[1] * (1 - shortfall)
    qpos[5] = facing_yaw(target_xy)


def download_wheels(cache: Path) -> str | None:
    """Fill ``cache`` with the two wheels (pip download, once); None, or why they could not be had."""
    if (cache / ROBEL_WHEEL).is_file() and (cache / TRANSFORMS3D_WHEEL).is_file():
        return None
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache), *REQUIREMENTS]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 or not (cache / ROBEL_WHEEL).is_file():
        return f"`pip download {' '.join(REQUIREMENTS)}` failed: {result.stderr.strip()[-300:]}"
    return None


def prepare_robel(cache: Path, into: Path) -> Path:
    """Unpack the cached wheels into ``into``, change ROBEL as the module docstring says, return the directory
    to put on sys.path."""
    for wheel in (ROBEL_WHEEL, TRANSFORMS3D_WHEEL):
        with zipfile.ZipFile(cache / wheel) as archive:
            archive.extractall(into)
    for name in _XML_FILES:
        path = into / name
        text = path.read_text()
        assert text.count(XML_DECLARATION) == 1, f"{name}: expected one XML declaration"
        path.write_text(text.replace(XML_DECLARATION, ""))
    for name, old, new in _CODE_CHANGES:
        path = into / name
        text = path.read_text()
        assert old in text, f"{name}: {old!r} not found"
        path.write_text(text.replace(old, new))
    return into


def run(task: str, seed: int, actions_path: Path, out: Path, face: bool) -> None:
    import importlib

    import gymnasium
    import numpy as np

    for name in ("", ".spaces", ".utils", ".utils.seeding", ".envs", ".envs.registration"):
        sys.modules["gym" + name] = importlib.import_module("gymnasium" + name)
    from robel.simulation.sim_scene import SimBackend

    assert gymnasium is sys.modules["gym"]
    module, class_name = TASK_CLASSES[task]
    env = getattr(importlib.import_module(module), class_name)(sim_backend=SimBackend.DM_CONTROL)
    env.seed(seed)
    episode_steps = next(steps for name, steps in EPISODE_STEPS.items() if name in task)

    def reset() -> np.ndarray:
        observation = env.reset()
        if face:
            data = env.sim_scene.data
            face_target(data.qpos, data.site_xpos[env.model.site_name2id("target")][:2].copy(), "Walk" in task)
            env.sim.forward()
        return observation

    observations = [reset()]
    rewards, terminations, successes, episode_starts = [], [], [], [0]
    episode_step = 0
    for action in np.load(actions_path):
        observation, reward, done, info = env.step(action)
        episode_step += 1
        rewards.append(reward)
        terminations.append(done)
        successes.append(info["score/success"])
        observations.append(observation)
        if done or episode_step == episode_steps:
            observations.append(reset())
            episode_starts.append(len(observations) - 1)
            episode_step = 0
    np.savez(
        out,
        observations=np.array(observations),
        rewards=np.array(rewards, dtype=np.float64),
        terminations=np.array(terminations, dtype=bool),
        successes=np.array(successes, dtype=bool),
        episode_starts=np.array(episode_starts),
    )


if __name__ == "__main__":
    robel_dir, task, seed, actions, out, *face = sys.argv[1:]
    sys.path.insert(0, robel_dir)
    run(task, int(seed), Path(actions), Path(out), face == ["face"])
