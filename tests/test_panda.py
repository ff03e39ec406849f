"""panda-gym through `make_env`: flattening, the success signal and sparse reward, seeding, RNG capture, the
`ace-rl envs` listing and a real training run. Skipped where panda-gym is not installed (`pip install
"ace-rl[panda]"`); the message for the missing package is tested by simulating its absence.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from ace_rl import envs
from ace_rl.cli import main
from ace_rl.envs import EnvError, episode_steps, has_success, make_env, observation_size, seed_env
from ace_rl.rng import capture_env_rng, restore_env_rng

needs_panda = pytest.mark.skipif(
    importlib.util.find_spec("panda_gym") is None, reason='panda-gym is not installed: pip install "ace-rl[panda]"'
)


def raw_env(env_id: str) -> gym.Env:
    """panda-gym's own environment, as `gym.make` builds it (Dict observations, panda-gym's seeding)."""
    import panda_gym  # noqa: F401  (registers the ids)

    return gym.make(env_id)


def fixed_actions(env: gym.Env, steps: int, seed: int = 1234) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(steps, *env.action_space.shape)).astype(np.float32)


def run(env: gym.Env, seed: int, actions: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The first observation of every episode and every reward, for fixed actions after ``seed_env``."""
    starts, rewards = [seed_env(env, seed)], []
    for action in actions:
        _, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        if terminated or truncated:
            starts.append(env.reset()[0])
    env.close()
    return starts, np.asarray(rewards)


@needs_panda
@pytest.mark.parametrize("env_id, sizes", [("PandaReachJoints-v3", (6, 3, 7)), ("PandaPush-v3", (18, 3, 3))])
def test_observation_is_the_observation_then_the_desired_goal(env_id: str, sizes: tuple[int, int, int]):
    raw = raw_env(env_id)
    parts, _ = raw.reset(seed=5)
    env = make_env(env_id)
    obs = seed_env(env, 5)
    observation, goal, actions = sizes
    sizes_seen = (parts["observation"].size, parts["desired_goal"].size, env.action_space.shape)
    assert sizes_seen == (observation, goal, (actions,))
    assert observation_size(env) == observation + goal and obs.dtype == np.float32
    np.testing.assert_array_equal(obs, np.concatenate([parts["observation"], parts["desired_goal"]]))
    for action in fixed_actions(env, 5):
        raw_parts, raw_reward, *_ = raw.step(action)
        obs, reward, *_ = env.step(action)
        assert reward == raw_reward
        np.testing.assert_array_equal(obs, np.concatenate([raw_parts["observation"], raw_parts["desired_goal"]]))
    assert has_success(env) and episode_steps(env) == 50


@needs_panda
def test_success_and_sparse_reward_match_panda_gym():
    """A scripted reach (end-effector control: move towards the goal) succeeds; at every step the success flag is
    the distance test done by hand and by panda-gym itself, and the sparse reward is 1 exactly there."""
    env = make_env("PandaReach-v3", reward="sparse")
    obs = seed_env(env, 2)
    task = env.unwrapped.task
    flags, rewards, ends = [], [], []
    for _ in range(50):
        effector, goal = obs[:3], obs[-3:]  # the observation opens with the end effector's position
        obs, reward, terminated, truncated, info = env.step(np.clip(10.0 * (goal - effector), -1.0, 1.0))
        by_hand = bool(np.linalg.norm(obs[:3] - obs[-3:]) < 0.05)  # panda-gym's Reach threshold
        own_sparse = float(task.compute_reward(obs[:3], obs[-3:], {}))  # panda-gym's sparse reward: -1 or 0
        assert info["success"] is by_hand is bool(info["is_success"])
        assert reward == float(by_hand) == 1.0 + own_sparse
        flags.append(info["success"])
        rewards.append(reward)
        ends.append(terminated)
        if terminated or truncated:
            break
    assert flags[-1] and not any(flags[:-1]) and ends[-1]  # panda-gym ends an episode on success
    assert rewards == [0.0] * (len(rewards) - 1) + [1.0]


@needs_panda
def test_dense_twin_keeps_panda_gym_reward_and_reports_success():
    env = make_env("PandaReachJointsDense-v3")
    obs = seed_env(env, 0)
    obs, reward, _, _, info = env.step(np.zeros(7, dtype=np.float32))
    assert reward == pytest.approx(-np.linalg.norm(obs[:3] - obs[-3:]), rel=1e-6)
    assert isinstance(info["success"], bool)


@needs_panda
def test_seeding_is_reproducible_across_episodes():
    """panda-gym alone draws every goal after the first from fresh entropy; through make_env, the seed decides all."""
    env_id = "PandaReachJoints-v3"
    actions = fixed_actions(make_env(env_id), 160)
    first, first_rewards = run(make_env(env_id), 3, actions)
    second, second_rewards = run(make_env(env_id), 3, actions)
    other, _ = run(make_env(env_id), 4, actions)
    assert len(first) == len(second) >= 4
    for start, again in zip(first, second):
        np.testing.assert_array_equal(start, again)
    np.testing.assert_array_equal(first_rewards, second_rewards)
    assert not np.array_equal(first[0], other[0])
    goals = [start[-3:] for start in first]
    assert all(not np.array_equal(a, b) for a, b in itertools.pairwise(goals))  # a new goal every episode

    raw_goals = []
    for _ in range(2):
        raw = raw_env(env_id)
        raw.reset(seed=3)
        raw_goals.append(raw.reset()[0]["desired_goal"])
    assert not np.array_equal(*raw_goals)  # what PandaSeeding fixes


@needs_panda
def test_random_state_restored_into_a_fresh_environment_replays_the_next_episode():
    """Goal, start and random actions are replayed exactly. (On the tasks with an object, Push and PickAndPlace,
    the next episode's physics then drifts apart by about 1e-3 after a few steps: PyBullet keeps contact-solver
    state that its API neither saves nor restores.)"""
    env_id = "PandaReachJoints-v3"
    env = make_env(env_id)
    seed_env(env, 3)
    actions = fixed_actions(env, 60, seed=7)
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    state = capture_env_rng(env)
    fresh = make_env(env_id)
    seed_env(fresh, 99)  # a different history, overwritten by the restore
    restore_env_rng(fresh, state)
    np.testing.assert_array_equal(env.reset()[0], fresh.reset()[0])
    np.testing.assert_array_equal(env.action_space.sample(), fresh.action_space.sample())
    for action in fixed_actions(env, 30, seed=8):
        np.testing.assert_array_equal(env.step(action)[0], fresh.step(action)[0])


@needs_panda
def test_unknown_and_unbuildable_ids_are_one_line_errors():
    with pytest.raises(EnvError, match=r"unknown environment 'PandaRech-v3'.*did you mean PandaReach-v3"):
        make_env("PandaRech-v3")
    import panda_gym.assets

    if not (Path(panda_gym.assets.get_data_path()) / "colored_cube.png").is_file():
        with pytest.raises(EnvError, match=r"'PandaFlip-v3' cannot be built: .*colored_cube\.png"):
            make_env("PandaFlip-v3")


def test_missing_panda_gym_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "panda_gym", None)  # makes `import panda_gym` fail
    with pytest.raises(EnvError) as caught:
        make_env("PandaReachJoints-v3")
    message = str(caught.value)
    assert "\n" not in message and "'PandaReachJoints-v3' needs panda-gym" in message
    assert 'pip install "ace-rl[panda]"' in message


@needs_panda
def test_listed_by_ace_rl_envs(monkeypatch, capfd):
    """The suite's row of `ace-rl envs` (only that row is built: building every suite takes half a minute)."""
    panda_rows = [row for row in envs._SUITES if row[0] == "panda"]
    assert len(panda_rows) == 1
    monkeypatch.setattr(envs, "_SUITES", tuple(panda_rows))
    main(["envs"])
    output = capfd.readouterr()
    lines = output.out.splitlines()
    assert lines[1].split()[:4] == ["panda", "Panda*-v3", "yes", "[panda]"]
    reach = next(line for line in lines if "PandaReachJoints-v3" in line)
    assert reach.split()[-4:] == ["9", "7", "50", "yes"]
    assert "argv" not in output.out and "pybullet" not in output.out + output.err  # PyBullet kept quiet


@needs_panda
def test_trains_on_the_sparse_reward(tmp_path: Path):
    run_dir = tmp_path / "panda"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ace_rl.cli",
            "train",
            "--env",
            "PandaReachJoints-v3",
            "--reward",
            "sparse",
            "--preset",
            "small",
            "--total-steps",
            "200",
            "--start-steps",
            "100",
            "--batch-size",
            "32",
            "--hidden-size",
            "32",
            "--eval-every",
            "200",
            "--eval-episodes",
            "2",
            "--causal-interval",
            "100",
            "--causal-samples",
            "100",
            "--threads",
            "1",
            "--no-progress",
            "--run-dir",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    with open(run_dir / "metrics.csv") as file:
        metrics = list(csv.DictReader(file))
    assert [int(row["env_step"]) for row in metrics] == [200]
    assert float(metrics[0]["eval_success_rate"]) in (0.0, 0.5, 1.0)
    assert float(metrics[0]["eval_return_mean"]) == float(metrics[0]["eval_success_rate"])  # one success ends it
    with open(run_dir / "episodes.csv") as file:
        episodes = list(csv.DictReader(file))
    assert episodes and all(float(row["return"]) in (0.0, 1.0) for row in episodes)
    for row in episodes:  # an episode ends on success (terminated, return 1) or at 50 steps (return 0)
        assert int(row["length"]) <= 50 and (row["terminated"] == "1") == (float(row["return"]) == 1.0)
