"""ROBEL's D'Kitty tasks (ace_rl/suites/dkitty.py): step for step against ROBEL 0.1.2's own task code, the
rewards recomputed from the observations, the vendored models against the wheel's, the package data in a built
wheel, and train, resume, eval, export and video through the real command line.

The reference runs ROBEL's code (tests/robel_reference.py says how it is changed for MuJoCo 3 and Gymnasium) from
the wheels of robel==0.1.2 and transforms3d==0.4.2, which the `robel_wheels` fixture fetches once with
`pip download` into ACE_RL_TEST_CACHE (default ~/.cache/ace-rl-tests); where they cannot be fetched (no network,
no cache), the tests that need them are skipped with pip's message.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import robel_reference
from ace_rl.envs import EnvError, episode_steps, has_success, make_env, observation_size, seed_env
from ace_rl.rng import capture_env_rng, restore_env_rng
from ace_rl.suites import dkitty_tasks as dkitty

REPO = Path(__file__).resolve().parent.parent
REFERENCE_SCRIPT = Path(robel_reference.__file__)
GOLDEN_STEPS = 400
OBSERVATION_TOLERANCE = 1e-9
SIZES = {
    "DKittyStandRandom-v0": 61,
    "DKittyStandFixed-v0": 61,
    "DKittyOrientRandom-v0": 53,
    "DKittyOrientFixed-v0": 53,
    "DKittyWalkRandom-v0": 52,
    "DKittyWalkFixed-v0": 52,
}


@pytest.fixture(scope="module")
def robel_wheels() -> Path:
    cache = Path(os.environ.get("ACE_RL_TEST_CACHE", Path.home() / ".cache" / "ace-rl-tests")) / "robel"
    problem = robel_reference.download_wheels(cache)
    if problem is not None:
        pytest.skip(f"ROBEL's wheel is needed as the reference and could not be had: {problem}")
    return cache


@pytest.fixture(scope="module")
def robel_code(robel_wheels: Path, tmp_path_factory) -> Path:
    return robel_reference.prepare_robel(robel_wheels, tmp_path_factory.mktemp("robel"))


def hold_actions(steps: int, seed: int = 0) -> np.ndarray:
    """float32 actions that hold the standing pose (every joint at 0), with a little noise."""
    hold = -dkitty._ACTION_CENTRE / dkitty._ACTION_HALF_RANGE
    return (hold + np.random.default_rng(seed).uniform(-0.05, 0.05, size=(steps, 12))).astype(np.float32)


def golden_actions(steps: int) -> np.ndarray:
    """Blocks of 80 float32 actions: random ones, 30 % beyond [-1, 1] so that clipping is exercised, then ones
    that hold the standing pose, so that episodes succeed too."""
    rng = np.random.default_rng(2019)
    blocks = [
        rng.uniform(-1.3, 1.3, size=(80, 12)) if block % 2 == 0 else hold_actions(80, seed=block)
        for block in range(math.ceil(steps / 80))
    ]
    return np.concatenate(blocks)[:steps].astype(np.float32)


def reference_run(robel_code: Path, task: str, seed: int, actions: np.ndarray, tmp_path: Path, face: bool) -> dict:
    actions_path, out = tmp_path / "actions.npy", tmp_path / "robel.npz"
    np.save(actions_path, actions)
    command = [sys.executable, str(REFERENCE_SCRIPT), str(robel_code), task, str(seed), str(actions_path), str(out)]
    result = subprocess.run(command + (["face"] if face else []), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out) as saved:
        return {key: saved[key] for key in saved.files}


def port_run(task: str, seed: int, actions: np.ndarray, face: bool) -> dict:
    """The same protocol as robel_reference.run, through make_env (TimeLimit at 80 steps)."""
    env = make_env(task)
    base = env.unwrapped
    assert isinstance(base, dkitty.DKittyEnv)

    def reset(**seed_arguments) -> np.ndarray:
        observation, _ = env.reset(**seed_arguments)
        if face:
            target_xy = base.data.site_xpos[base.model.site("target").id][:2].copy()
            robel_reference.face_target(base.data.qpos, target_xy, "Walk" in task)
            mujoco.mj_forward(base.model, base.data)
        return observation

    observations = [reset(seed=seed)]
    rewards, terminations, successes, starts = [], [], [], [0]
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        terminations.append(terminated)
        successes.append(info["success"])
        observations.append(observation)
        if terminated or truncated:
            observations.append(reset())
            starts.append(len(observations) - 1)
    env.close()
    return {
        "observations": np.array(observations),
        "rewards": np.array(rewards),
        "terminations": np.array(terminations),
        "successes": np.array(successes),
        "episode_starts": np.array(starts),
    }


@pytest.mark.parametrize(
    "task, seed, face",
    [
        ("DKittyStandRandom-v0", 3, False),
        ("DKittyStandFixed-v0", 4, False),
        ("DKittyOrientRandom-v0", 5, True),
        ("DKittyOrientRandom-v0", 6, False),
        ("DKittyOrientFixed-v0", 7, False),
        ("DKittyWalkRandom-v0", 8, True),
        ("DKittyWalkFixed-v0", 9, False),
    ],
)
def test_the_port_follows_robels_own_code_step_for_step(robel_code: Path, tmp_path: Path, task: str, seed, face):
    actions = golden_actions(GOLDEN_STEPS)
    expected = reference_run(robel_code, task, seed, actions, tmp_path, face)
    got = port_run(task, seed, actions, face)
    np.testing.assert_array_equal(got["episode_starts"], expected["episode_starts"])
    assert got["observations"].shape == expected["observations"].shape == (len(expected["observations"]), SIZES[task])
    np.testing.assert_allclose(got["observations"], expected["observations"], rtol=0, atol=OBSERVATION_TOLERANCE)
    np.testing.assert_allclose(got["rewards"], expected["rewards"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(got["terminations"], expected["terminations"])
    np.testing.assert_array_equal(got["successes"], expected["successes"])
    # The comparison means something: the episodes moved, and (where the protocol allows) ended and succeeded.
    assert np.ptp(expected["observations"][:, 6:18], axis=0).min() > 0.1
    if task.startswith(("DKittyOrient", "DKittyWalk")):
        assert expected["terminations"].sum() >= 3
    if task == "DKittyStandRandom-v0" or face:
        assert 0 < expected["successes"].sum() < GOLDEN_STEPS


def test_vendored_models_are_the_wheels_without_the_xml_declaration(robel_wheels: Path):
    vendored = sorted(path for path in dkitty.ASSETS.rglob("*") if path.is_file())
    models = [path for path in vendored if path.name not in ("LICENSE", "NOTICE")]
    assert len(models) == 6 + 13 + 1  # XML files, meshes, the floor's texture
    with zipfile.ZipFile(robel_wheels / robel_reference.ROBEL_WHEEL) as wheel:
        for path in models:
            original = wheel.read("robel/" + path.relative_to(dkitty.ASSETS).as_posix())
            if path.suffix == ".xml":
                declaration = robel_reference.XML_DECLARATION.encode()
                assert original.count(declaration) == 1
                original = original.replace(declaration, b"")
            assert path.read_bytes() == original, path


def test_a_built_wheel_ships_the_models(tmp_path: Path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "ace_rl", source / "ace_rl", ignore=shutil.ignore_patterns("__pycache__"))
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q"]
    result = subprocess.run([*command, "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("ace_rl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if "/robel_assets/" in name}
    expected = {
        "ace_rl/suites/robel_assets/" + path.relative_to(dkitty.ASSETS).as_posix()
        for path in dkitty.ASSETS.rglob("*")
        if path.is_file()
    }
    assert "ace_rl/suites/robel_assets/NOTICE" in expected and len(expected) == 22
    assert shipped == expected


def stand_reward_from_observation(observation: np.ndarray) -> tuple[float, bool, bool]:
    """ROBEL's Stand reward, termination and success from the 61 observed values (layout: torso position 0:3,
    uprightness 48, pose error 49:61); the centre distance is the 3-D norm, height included, as in ROBEL."""
    upright, pose_error = observation[48], observation[49:61]
    mean_error = np.abs(pose_error).mean()
    reward = (
        2 * upright
        - 100 * (upright < 0)
        - 4 * mean_error
        - 2 * math.sqrt(sum(value * value for value in observation[0:3]))
        + 5 * (mean_error < np.pi / 6) * upright
        + 10 * (mean_error < np.pi / 12 and upright > 0.9)
    )
    return reward, bool(upright < 0), bool(mean_error < np.pi / 12 and upright > 0.9)


def walk_reward_from_observation(observation: np.ndarray) -> tuple[float, bool, bool]:
    """ROBEL's Walk reward from the 52 observed values (uprightness 48, heading cosine 49, target offset 50:52)."""
    upright, heading = observation[48], observation[49]
    distance = math.hypot(*observation[50:52])
    reward = (
        10 * (upright - 0.9)
        - 500 * (upright < 0.9)
        - 4 * distance
        + 20 * (heading - 0.9)
        + 5 * (distance < 0.5 or heading > 0.9)
        + 10 * (distance < 0.5 and heading > 0.9)
    )
    return reward, bool(upright < 0.9), bool(distance < 0.5 and heading > 0.9)


def orient_reward_from_observation(observation: np.ndarray) -> tuple[float, bool, bool]:
    """ROBEL's Orient reward from the 53 observed values (uprightness 48, facing 49:51, target direction 51:53)."""
    upright, facing, target = observation[48], observation[49:51], observation[51:53]
    angle = math.acos(max(-1.0, min(1.0, float(facing @ target / np.hypot(*facing) / np.hypot(*target)))))
    reward = (
        20 * (upright - 0.9)
        - 500 * (upright < 0.9)
        - 4 * angle
        - 4 * math.sqrt(sum(value * value for value in observation[0:3]))
        + 5 * (angle < 0.26 or upright > 0.96)
        + 10 * (angle < 0.087 and upright > 0.96)
    )
    return reward, bool(upright < 0.9), bool(angle < 0.087 and upright > 0.96)


@pytest.mark.parametrize(
    "task, from_observation",
    [
        ("DKittyStandRandom-v0", stand_reward_from_observation),
        ("DKittyOrientRandom-v0", orient_reward_from_observation),
        ("DKittyWalkRandom-v0", walk_reward_from_observation),
    ],
)
def test_rewards_follow_from_the_observation(task: str, from_observation):
    env = make_env(task)
    seed_env(env, 11)
    checked = 0
    for action in golden_actions(240):
        observation, reward, terminated, truncated, info = env.step(action)
        if info["unstable"]:  # see test_a_simulation_that_blows_up_ends_the_episode_as_a_fall
            assert terminated and reward == env.unwrapped.falling_reward
            env.reset()
            continue
        expected_reward, expected_end, expected_success = from_observation(observation)
        assert reward == pytest.approx(expected_reward, abs=1e-9)
        assert (terminated, info["success"]) == (expected_end, expected_success)
        checked += 1
        if terminated or truncated:
            env.reset()
    assert checked >= 200


def test_torso_height_counts_in_the_centre_distance():
    env = make_env("DKittyStandFixed-v0")
    seed_env(env, 0)
    observation, _, _, _, info = env.step(np.zeros(12, dtype=np.float32))
    sideways, height = np.hypot(observation[0], observation[1]), observation[2]
    assert abs(height) > 0.04 > sideways  # settled below the model's start height, hardly moved sideways
    assert info["reward_terms"]["center_distance_cost"] == pytest.approx(-2 * np.hypot(sideways, height), abs=1e-12)


def test_actions_map_to_the_joint_ranges_and_move_at_most_pi_rad_per_second():
    env = make_env("DKittyStandFixed-v0")
    seed_env(env, 0)
    base = env.unwrapped
    low, high = dkitty.JOINT_RANGES[:, 0].astype(float), dkitty.JOINT_RANGES[:, 1].astype(float)
    for action in (np.full(12, -1.0), np.full(12, 1.0), np.linspace(-2, 2, 12), np.zeros(12)):
        before = base.data.qpos[6:18].copy()
        env.step(action.astype(np.float32))
        wanted = low + (np.clip(action, -1, 1) + 1) / 2 * (high - low)
        allowed = np.clip(wanted, before - np.pi * 0.1, before + np.pi * 0.1)
        np.testing.assert_allclose(base.data.ctrl, allowed, atol=1e-6)
    assert base.step_seconds == pytest.approx(0.1) and dkitty.FRAME_SKIP == 40


def test_episodes_last_80_steps_walk_160_report_success_and_have_a_sparse_reward():
    for task, size in SIZES.items():
        env = make_env(task, reward="sparse")
        length = 160 if "Walk" in task else 80
        assert (observation_size(env), env.action_space.shape, episode_steps(env), has_success(env)) == (
            size,
            (12,),
            length,
            True,
        )
        seed_env(env, 1)
        steps = 0
        for action in hold_actions(length):
            _, reward, terminated, truncated, info = env.step(action)
            steps += 1
            assert reward == float(info["success"]) and isinstance(info["success"], bool)
            if terminated:
                break
        assert truncated or terminated
        assert truncated == (steps == length and not terminated)
        env.close()


def test_orient_facing_its_target_succeeds():
    env = make_env("DKittyOrientRandom-v0")
    seed_env(env, 2)
    base = env.unwrapped
    base.data.qpos[5] = robel_reference.facing_yaw(base.data.site_xpos[base.model.site("target").id][:2])
    assert base.angle_error() < 1e-7  # facing exactly, with the arccos guarded against a cosine just past 1
    successes = [env.step(action)[4]["success"] for action in hold_actions(10)]
    assert any(successes)


@pytest.mark.parametrize("task, penalty", [("DKittyStandRandom-v0", -100.0), ("DKittyOrientRandom-v0", -500.0)])
def test_a_simulation_that_blows_up_ends_the_episode_as_a_fall(task: str, penalty: float):
    env = make_env(task, reward="dense")
    seed_env(env, 0)
    env.unwrapped.data.qvel[4] = np.nan  # MuJoCo resets the simulation to the model's standing start
    observation, reward, terminated, truncated, info = env.step(np.zeros(12, dtype=np.float32))
    assert (reward, terminated, truncated, info["success"], info["unstable"]) == (penalty, True, False, False, True)
    assert np.all(np.isfinite(observation))
    env.reset()
    assert env.step(np.zeros(12, dtype=np.float32))[4]["unstable"] is False


def test_reset_randomises_and_a_seed_replays():
    first, again, other = (make_env("DKittyOrientRandom-v0") for _ in range(3))
    starts = [seed_env(first, 5), seed_env(again, 5), seed_env(other, 6)]
    np.testing.assert_array_equal(starts[0], starts[1])
    assert not np.array_equal(starts[0], starts[2])
    assert not np.array_equal(first.reset()[0], starts[0])  # the next episode starts elsewhere
    state = capture_env_rng(first)
    next_start = first.reset()[0]
    restore_env_rng(again, state)
    np.testing.assert_array_equal(again.reset()[0], next_start)


def test_unknown_dkitty_ids_suggest_the_known_ones():
    with pytest.raises(EnvError) as caught:
        make_env("DKittyStandRandom-v1")
    assert "did you mean DKittyStandRandom-v0" in str(caught.value) and "\n" not in str(caught.value)
    assert {"DKittyStandRandom-v0", "DKittyOrientRandom-v0"} <= set(gym.registry)


def ace_rl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ace_rl.cli", *args], capture_output=True, text=True, timeout=600)


TINY = ["--preset", "small", "--start-steps", "100", "--batch-size", "32", "--hidden-size", "32"]
TINY += ["--eval-every", "200", "--eval-episodes", "1", "--threads", "1", "--no-progress"]


def test_train_resume_eval_export_and_video_through_the_command_line(tmp_path: Path):
    run_dir = tmp_path / "run"
    train = ["train", "--env", "DKittyStandRandom-v0", "--reward", "sparse", "--run-dir", str(run_dir), *TINY]
    result = ace_rl(*train, "--total-steps", "200")
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["env"], config["reward"]) == ("DKittyStandRandom-v0", "sparse")

    result = ace_rl("train", "--resume", str(run_dir), "--total-steps", "400", "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(run_dir / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["env_step"]) for row in rows if row.get("eval_return_mean")] == [200, 400]
    for row in rows:
        if row.get("eval_success_rate"):
            assert 0.0 <= float(row["eval_success_rate"]) <= 1.0

    result = ace_rl("eval", str(run_dir), "--checkpoint", "final", "--episodes", "2", "--seed", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("DKittyStandRandom-v0 final: return ")

    exported = tmp_path / "policy.onnx"
    result = ace_rl("export", str(run_dir), "--out", str(exported))
    assert result.returncode == 0, result.stderr[-3000:]
    assert exported.stat().st_size > 1000

    if importlib.util.find_spec("imageio_ffmpeg") is None:
        return
    from ace_rl import video

    try:
        video.select_gl_backend()
    except video.VideoError:
        return  # no off-screen OpenGL here; tests/test_video.py reports that with its reason
    result = ace_rl("eval", str(run_dir), "--episodes", "1", "--seed", "3", "--video")
    assert result.returncode == 0, result.stderr[-3000:]
    import imageio.v2 as imageio

    path = next((run_dir / "videos").glob("eval-*.mp4"))
    reader = imageio.get_reader(path, format="FFMPEG")
    frames = np.stack(list(reader.iter_data()))
    reader.close()
    assert frames.shape[1:] == (480, 480, 3) and 2 <= len(frames) <= 81
    # A scene (mostly grey floor, so many colours rather than a large spread) in which something moves.
    assert len(np.unique(frames[0].reshape(-1, 3), axis=0)) > 200
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() > 30
