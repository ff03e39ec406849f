"""The environment layer: Gymnasium, dm_control, Meta-World and Gymnasium-Robotics ids through `make_env`.

A suite's tests are skipped only when its package is not importable (install it with `pip install
"ace-rl[all]"`); the tests of the messages for missing suites simulate the missing package.
"""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from ace_rl.checkpoint import read_policy_file
from ace_rl.config import preset_config
from ace_rl.envs import (
    EnvError,
    check_env_id,
    episode_steps,
    format_suites,
    has_success,
    list_suites,
    make_env,
    observation_size,
    seed_env,
)
from ace_rl.evaluation import run_episodes
from ace_rl.rng import capture_env_rng, restore_env_rng
from ace_rl.rundir import RunDir
from ace_rl.trainer import run_training
from learned import assert_learned


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


needs_dmc = pytest.mark.skipif(
    not installed("dm_control"), reason='dm_control is not installed: pip install "ace-rl[dmc]"'
)
needs_metaworld = pytest.mark.skipif(
    not installed("metaworld"), reason='Meta-World is not installed: pip install "ace-rl[metaworld]"'
)
needs_robotics = pytest.mark.skipif(
    not installed("gymnasium_robotics"), reason='gymnasium-robotics is not installed: pip install "ace-rl[robotics]"'
)

ACCEPTED_FORMS = ("Gymnasium id", "dmc:DOMAIN-TASK", "metaworld:TASK")


@dataclass
class Rollout:
    starts: list[np.ndarray]
    """The first observation of every episode."""
    rewards: np.ndarray
    infos: list[dict]
    ends: list[tuple[int, bool, bool]]
    """(step within the episode, terminated, truncated) of every episode that ended."""


def rollout(env: gym.Env, seed: int, steps: int) -> Rollout:
    """``steps`` steps of fixed random actions (the same for every seed) after ``seed_env(env, seed)``."""
    actions = np.random.default_rng(1234).uniform(-1.0, 1.0, size=(steps, *env.action_space.shape))
    low, high = env.action_space.low, env.action_space.high
    starts, rewards, infos, ends = [seed_env(env, seed)], [], [], []
    episode_step = 0
    for action in actions:
        scaled = (low + (action + 1.0) * 0.5 * (high - low)).astype(np.float32)
        _, reward, terminated, truncated, info = env.step(scaled)
        episode_step += 1
        rewards.append(reward)
        infos.append(info)
        if terminated or truncated:
            ends.append((episode_step, terminated, truncated))
            starts.append(env.reset()[0])
            episode_step = 0
    env.close()
    return Rollout(starts, np.asarray(rewards, dtype=np.float64), infos, ends)


def assert_reproducible(env_id: str, steps: int) -> Rollout:
    """Two separately made environments with the same seed agree; another seed starts elsewhere."""
    first, second = rollout(make_env(env_id), 3, steps), rollout(make_env(env_id), 3, steps)
    other = rollout(make_env(env_id), 4, steps)
    assert len(first.starts) == len(second.starts)
    for start, again in zip(first.starts, second.starts):
        np.testing.assert_array_equal(start, again)
    np.testing.assert_array_equal(first.rewards, second.rewards)
    assert not np.array_equal(first.starts[0], other.starts[0])
    return first


def assert_sparse_is_success(env: gym.Env, result: Rollout) -> None:
    assert has_success(env)
    assert all(isinstance(info["success"], bool) for info in result.infos)
    np.testing.assert_array_equal(result.rewards, [float(info["success"]) for info in result.infos])


def assert_unknown(env_id: str, suggestion: str) -> None:
    with pytest.raises(EnvError) as caught:
        make_env(env_id)
    message = str(caught.value)
    assert "\n" not in message
    assert f"unknown environment {env_id!r}" in message
    assert all(form in message for form in ACCEPTED_FORMS), message
    assert f"did you mean {suggestion}" in message, message


def read_csv(path: Path) -> list[dict]:
    with open(path) as file:
        return list(csv.DictReader(file))


def train_briefly(env_id: str, run_dir: Path, reward: str = "dense") -> list[dict]:
    """A real 300-step training run, checked to have trained the agent; returns the rows of its metrics.csv."""
    config = preset_config(
        "small",
        env=env_id,
        total_steps=300,
        start_steps=100,
        batch_size=32,
        hidden_size=32,
        causal_interval=150,
        causal_samples=100,
        reset_interval=100,
        reset_start=50,
        eval_every=300,
        eval_episodes=1,
        threads=1,
        progress=False,
        run_dir=run_dir,
        reward=reward,
    )
    metrics = read_csv(run_training(config) / "metrics.csv")
    assert [int(row["env_step"]) for row in metrics] == [300]
    assert np.isfinite(float(metrics[0]["eval_return_mean"]))
    assert_learned(run_dir, config)
    return metrics


def assert_rng_capture_replays_the_next_episode(env_id: str) -> None:
    """Capturing an environment's random state at an episode end and restoring it replays the next reset."""
    env = make_env(env_id)
    seed_env(env, 3)
    for _ in range(5):
        env.step(env.action_space.sample())
    state = capture_env_rng(env)
    first, _ = env.reset()
    first_action = env.action_space.sample()
    restore_env_rng(env, state)
    second, _ = env.reset()
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first_action, env.action_space.sample())
    env.close()


def assert_rng_restores_into_a_fresh_environment(env_id: str) -> None:
    """A resumed run restores the captured random state into newly made environments: they must go on as the
    original would have (resets, random actions, and the steps that follow)."""
    original = make_env(env_id)
    seed_env(original, 3)
    for _ in range(5):
        original.step(original.action_space.sample())
    state = capture_env_rng(original)
    fresh = make_env(env_id)  # never seeded, never reset
    restore_env_rng(fresh, state)
    unrestored = make_env(env_id)
    seed_env(unrestored, 4)
    for episode in range(2):
        start, _ = original.reset()
        np.testing.assert_array_equal(fresh.reset()[0], start, err_msg=f"reset {episode}")
        if episode == 0:
            assert not np.array_equal(unrestored.reset()[0], start)  # the restored state is what makes them agree
        for _ in range(3):
            action = original.action_space.sample()
            np.testing.assert_array_equal(fresh.action_space.sample(), action)
            obs, reward, *_ = original.step(action)
            fresh_obs, fresh_reward, *_ = fresh.step(action)
            np.testing.assert_array_equal(fresh_obs, obs)
            assert fresh_reward == reward
    for env in (original, fresh, unrestored):
        env.close()


@pytest.mark.parametrize(
    "env_id",
    [
        "Hopper-v5",
        pytest.param("dmc:walker-run", marks=needs_dmc),
        pytest.param("metaworld:button-press-v3", marks=needs_metaworld),
        pytest.param("AdroitHandRelocate-v1", marks=needs_robotics),
    ],
)
def test_env_rng_restored_into_a_fresh_environment(env_id: str):
    assert_rng_restores_into_a_fresh_environment(env_id)


# --- Gymnasium ids -----------------------------------------------------------------------------------------


def test_gymnasium_ids_have_no_success_signal():
    env = make_env("Hopper-v5")
    assert not has_success(env) and episode_steps(env) == 1000
    seed_env(env, 0)
    _, _, _, _, info = env.step(env.action_space.sample())
    assert "success" not in info
    with pytest.raises(EnvError, match="'Hopper-v5' reports no success signal"):
        make_env("Hopper-v5", reward="sparse")


def test_unknown_gymnasium_id_names_the_forms_and_the_closest_ids():
    assert_unknown("Hopprr-v5", "Hopper-v5")
    with pytest.raises(EnvError, match="has Discrete actions; ACE needs continuous"):
        make_env("CartPole-v1")
    with pytest.raises(EnvError, match="unknown reward 'shaped'; accepted: dense, sparse"):
        make_env("Hopper-v5", reward="shaped")


# --- dm_control ----------------------------------------------------------------------------------------------


def flat_dm_observation(timestep) -> np.ndarray:
    return np.concatenate([np.asarray(value, dtype=np.float32).ravel() for value in timestep.observation.values()])


@needs_dmc
def test_dmc_matches_dm_control_seeded_with_task_kwargs_and_truncates_at_1000_steps():
    env = make_env("dmc:walker-run")
    from dm_control import suite

    raw = suite.load("walker", "run", task_kwargs={"random": 7})
    assert env.observation_space.dtype == np.float32 and env.observation_space.shape == (24,)
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    assert not has_success(env) and episode_steps(env) == 1000
    for episode in range(2):  # the second episode checks that an unseeded reset continues the random stream
        obs = seed_env(env, 7) if episode == 0 else env.reset()[0]
        np.testing.assert_array_equal(obs, flat_dm_observation(raw.reset()))
        for step in range(1, 1001):
            obs, reward, terminated, truncated, info = env.step(np.zeros(6, dtype=np.float32))
            timestep = raw.step(np.zeros(6))
            assert reward == timestep.reward and info == {}
            assert not terminated and truncated == (step == 1000)
        np.testing.assert_array_equal(obs, flat_dm_observation(timestep))


@needs_dmc
def test_dmc_is_reproducible_across_environments():
    result = assert_reproducible("dmc:cheetah-run", 1100)
    assert result.ends == [(1000, False, True)]
    assert not np.array_equal(result.starts[0], result.starts[1])


@needs_dmc
@pytest.mark.parametrize(
    "env_id, action_size",
    [
        ("dmc:ball_in_cup-catch", 2),
        ("dmc:point_mass-easy", 2),
        ("dmc:hopper-hop", 4),
        ("dmc:humanoid-run", 21),
        ("dmc:dog-run", 38),
    ],
)
def test_dmc_observation_is_the_sum_of_the_spec_parts(env_id: str, action_size: int):
    env = make_env(env_id)
    spec = env.unwrapped.dm_env.observation_spec()
    assert observation_size(env) == sum(int(np.prod(part.shape)) for part in spec.values())
    assert env.action_space.shape == (action_size,)
    obs = seed_env(env, 0)
    assert obs.shape == (observation_size(env),) and obs.dtype == np.float32
    env.close()


@needs_dmc
def test_dmc_actions_are_rescaled_to_the_task_bounds():
    env = make_env("dmc:quadruped-walk")  # its action bounds are not [-1, 1] everywhere
    dm_env = env.unwrapped.dm_env
    spec = dm_env.action_spec()
    assert not np.allclose(spec.maximum, 1.0)
    seed_env(env, 0)
    for unit, bound in ((1.0, spec.maximum), (-1.0, spec.minimum), (3.0, spec.maximum)):
        env.step(np.full(env.action_space.shape, unit, dtype=np.float32))
        np.testing.assert_allclose(dm_env.physics.data.ctrl, bound)
    env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    np.testing.assert_allclose(dm_env.physics.data.ctrl, (spec.minimum + spec.maximum) / 2)


@needs_dmc
def test_dmc_has_no_sparse_reward_and_unknown_tasks_suggest_close_ones():
    with pytest.raises(EnvError, match="'dmc:walker-run' reports no success signal"):
        make_env("dmc:walker-run", reward="sparse")
    assert_unknown("dmc:walker-rn", "dmc:walker-run")
    assert_unknown("dmc:ball_in_cup-cath", "dmc:ball_in_cup-catch")


@needs_dmc
def test_dmc_random_state_is_captured():
    assert_rng_capture_replays_the_next_episode("dmc:walker-run")


@needs_dmc
def test_dmc_trains(tmp_path: Path):
    train_briefly("dmc:walker-run", tmp_path / "dmc")


# --- Meta-World ----------------------------------------------------------------------------------------------


@needs_metaworld
def test_metaworld_is_reproducible_truncates_at_200_steps_and_samples_a_goal_per_episode():
    result = assert_reproducible("metaworld:pick-place-wall-v3", 450)
    assert result.ends == [(200, False, True), (200, False, True)]
    goals = [start[-3:] for start in result.starts]  # the goal position closes the observation
    assert not np.array_equal(goals[0], goals[1]) and not np.array_equal(goals[1], goals[2])
    assert all(isinstance(info["success"], bool) for info in result.infos)


@needs_metaworld
@pytest.mark.parametrize("env_id", ["metaworld:button-press-v3", "metaworld:assembly-v3"])
def test_metaworld_spaces(env_id: str):
    env = make_env(env_id)
    assert observation_size(env) == 39 and env.action_space.shape == (4,)
    assert has_success(env) and episode_steps(env) == 200
    assert env.observation_space.contains(seed_env(env, 0))
    assert has_success(gym.wrappers.RecordEpisodeStatistics(env))
    env.close()


@needs_metaworld
@pytest.mark.filterwarnings("ignore:Constant")
def test_metaworld_sparse_reward_is_the_success_flag_of_a_solved_task():
    from metaworld.policies import SawyerButtonPressV3Policy

    env = make_env("metaworld:button-press-v3", reward="sparse")
    policy = SawyerButtonPressV3Policy()  # Meta-World's scripted solution of the task
    obs = seed_env(env, 0)
    rewards, infos, truncated = [], [], False
    while not truncated:
        obs, reward, _, truncated, info = env.step(policy.get_action(obs))
        rewards.append(reward)
        infos.append(info)
    assert any(info["success"] for info in infos)
    assert_sparse_is_success(env, Rollout([], np.asarray(rewards), infos, []))


@needs_metaworld
def test_metaworld_unknown_task_suggests_close_ones():
    assert_unknown("metaworld:button-pres-v3", "metaworld:button-press-v3")


def play(env: gym.Env, seed: int, policy, episodes: int) -> tuple[list[float], list[bool], list[bool]]:
    """Written out here, apart from ace_rl.evaluation: after ``seed_env(env, seed)``, the return of each episode,
    whether the task's own ``info["success"]`` was set at any of its steps, and whether at its last step."""
    seed_env(env, seed)
    returns, successes, last_successes = [], [], []
    for _ in range(episodes):
        obs, _ = env.reset()
        total, success, done = 0.0, False, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total += float(reward)
            success = success or bool(info["success"])
            done = terminated or truncated
        returns.append(total)
        successes.append(success)
        last_successes.append(bool(info["success"]))
    env.close()
    return returns, successes, last_successes


@needs_metaworld
@pytest.mark.filterwarnings("ignore:Constant")
def test_success_rate_counts_the_episodes_that_reached_success_at_any_step():
    from metaworld.policies import SawyerButtonPressV3Policy

    scripted = SawyerButtonPressV3Policy()  # Meta-World's own solution of the task

    def press_release_policy():
        """Episodes 1 and 3: press the button (Meta-World's scripted solution), then from step 100 pull the hand
        back so that the button is released; episode 2: stand still."""
        steps = [0]

        def policy(obs: np.ndarray) -> np.ndarray:
            episode, step = divmod(steps[0], 200)  # 200-step episodes
            steps[0] += 1
            if episode == 1:
                return np.zeros(4, dtype=np.float32)
            if step >= 100:
                return np.array([0.0, -1.0, 0.0, 0.0], dtype=np.float32)
            return scripted.get_action(obs).astype(np.float32)

        return policy

    env = make_env("metaworld:button-press-v3")
    seed_env(env, 0)
    result = run_episodes(press_release_policy(), env, 3)
    returns, successes, last_successes = play(make_env("metaworld:button-press-v3"), 0, press_release_policy(), 3)
    assert successes == [True, False, True] and last_successes == [False, False, False]
    assert result.successes.tolist() == successes and result.success_rate == pytest.approx(2 / 3)
    np.testing.assert_allclose(result.returns, returns, rtol=1e-12)


@needs_metaworld
def test_metaworld_trains_on_the_sparse_reward_and_reports_success(tmp_path: Path):
    metrics = train_briefly("metaworld:button-press-v3", tmp_path / "metaworld", reward="sparse")
    # One evaluation episode with the sparse reward float(info["success"]): a success iff the return is positive.
    return_mean = float(metrics[0]["eval_return_mean"])
    assert return_mean == int(return_mean)
    assert float(metrics[0]["eval_success_rate"]) == float(return_mean > 0)
    result = subprocess.run(
        [sys.executable, "-m", "ace_rl.cli", "eval", str(tmp_path / "metaworld"), "--episodes", "2", "--seed", "5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    # The same checkpoint played here, the success read from the task's info.
    actor, _ = read_policy_file(RunDir(tmp_path / "metaworld").policy("best"))

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return actor.deterministic(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0].numpy()

    returns, successes, _ = play(make_env("metaworld:button-press-v3", reward="sparse"), 5, policy, 2)
    expected = f"return {np.mean(returns):.2f} +- {np.std(returns):.2f}, success rate {np.mean(successes):.2f}"
    assert expected in result.stdout


@needs_metaworld
def test_metaworld_random_state_is_captured():
    assert_rng_capture_replays_the_next_episode("metaworld:button-press-v3")


# --- Gymnasium-Robotics: Adroit and Shadow Hand ------------------------------------------------------------------


ADROIT_SIZES = {
    "AdroitHandDoor-v1": (39, 28),
    "AdroitHandHammer-v1": (46, 26),
    "AdroitHandPen-v1": (45, 24),
    "AdroitHandRelocate-v1": (39, 30),
}


@needs_robotics
@pytest.mark.parametrize("env_id", sorted(ADROIT_SIZES))
def test_adroit_is_reproducible_and_truncates_at_200_steps(env_id: str):
    result = assert_reproducible(env_id, 200)
    assert result.ends == [(200, False, True)]
    env = make_env(env_id)
    assert (observation_size(env), env.action_space.shape[0]) == ADROIT_SIZES[env_id]
    assert has_success(env) and episode_steps(env) == 200
    assert all(isinstance(info["success"], bool) for info in result.infos)


@needs_robotics
def test_adroit_sparse_reward_is_the_success_flag():
    env = make_env("AdroitHandDoor-v1", reward="sparse")
    result = rollout(env, 0, 20)
    assert_sparse_is_success(env, result)
    env = make_env("AdroitHandDoor-v1", reward="sparse")
    seed_env(env, 0)
    task = env.unwrapped
    qpos = task.data.qpos.copy()
    qpos[task.door_hinge_addrs] = 1.5  # the door stands open: the task counts that as solved
    task.set_state(qpos, task.data.qvel.copy())
    _, reward, _, _, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    assert info["success"] is True and reward == 1.0


@needs_robotics
@pytest.mark.parametrize(
    "env_id", ["HandManipulateBlockDense-v1", "HandManipulateEggDense-v1", "HandManipulatePenDense-v1"]
)
def test_shadow_hand_observation_is_the_observation_then_the_desired_goal(env_id: str):
    raw = gym.make(env_id)
    parts, _ = raw.reset(seed=5)
    env = make_env(env_id)
    obs = seed_env(env, 5)
    assert observation_size(env) == parts["observation"].size + parts["desired_goal"].size == 68
    np.testing.assert_array_equal(obs, np.concatenate([parts["observation"], parts["desired_goal"]]))
    action = np.full(env.action_space.shape, 0.3, dtype=np.float32)
    raw_parts, raw_reward, *_ = raw.step(action)
    obs, reward, *_ = env.step(action)
    assert reward == raw_reward
    np.testing.assert_array_equal(obs, np.concatenate([raw_parts["observation"], raw_parts["desired_goal"]]))
    assert env.action_space.shape == (20,) and has_success(env) and episode_steps(env) == 100


@needs_robotics
def test_shadow_hand_is_reproducible_and_its_sparse_reward_is_the_success_flag():
    result = assert_reproducible("HandManipulateBlockDense-v1", 120)
    assert result.ends == [(100, False, True)]
    env = make_env("HandManipulateBlockDense-v1", reward="sparse")
    assert_sparse_is_success(env, rollout(env, 0, 30))
    env = make_env("HandManipulateBlockDense-v1", reward="sparse")
    seed_env(env, 0)
    task = env.unwrapped
    task.goal = task._get_achieved_goal().copy()  # the block already sits at its goal pose
    _, reward, _, _, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    assert info["success"] is True and info["is_success"] == 1.0 and reward == 1.0


@needs_robotics
def test_robotics_unknown_ids_suggest_close_ones():
    assert_unknown("AdroitHandDor-v1", "AdroitHandDoor-v1")
    check_env_id("HandManipulateEggDense-v1")


@needs_robotics
@pytest.mark.parametrize("env_id", ["AdroitHandDoor-v1", "HandManipulateBlockDense-v1"])
def test_robotics_trains(tmp_path: Path, env_id: str):
    train_briefly(env_id, tmp_path / env_id)


# --- missing suites and the suite listing --------------------------------------------------------------------


@pytest.fixture
def suites_missing(monkeypatch):
    """Pretend that none of the optional suites is installed."""
    for module in ("dm_control", "metaworld", "gymnasium_robotics", "panda_gym"):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    plain = {env_id: spec for env_id, spec in gym.registry.items() if "gymnasium_robotics" not in str(spec.entry_point)}
    monkeypatch.setattr(gym, "registry", plain)


@pytest.mark.parametrize(
    "env_id, extra",
    [
        ("dmc:walker-run", "dmc"),
        ("metaworld:assembly-v3", "metaworld"),
        ("AdroitHandDoor-v1", "robotics"),
        ("HandManipulatePenDense-v1", "robotics"),
    ],
)
def test_missing_suite_names_the_extra_to_install(suites_missing, env_id: str, extra: str):
    with pytest.raises(EnvError) as caught:
        make_env(env_id)
    message = str(caught.value)
    assert f"environment {env_id!r} needs" in message and "not installed" in message
    assert f'pip install "ace-rl[{extra}]"' in message and '"ace-rl[all]"' in message


def test_list_suites_without_the_optional_suites(suites_missing):
    suites = {suite.name: suite for suite in list_suites()}
    assert list(suites) == [
        "gymnasium-mujoco",
        "dm_control",
        "metaworld",
        "adroit",
        "shadow hand",
        "panda",
        "robel d'kitty",
    ]
    assert suites["gymnasium-mujoco"].installed and suites["gymnasium-mujoco"].extra is None
    assert suites["robel d'kitty"].installed and suites["robel d'kitty"].extra is None  # its models ship with ace-rl
    stand = suites["robel d'kitty"].examples[0]
    assert (stand.env_id, stand.observation_size, stand.action_size, stand.episode_steps, stand.success) == (
        "DKittyStandRandom-v0",
        61,
        12,
        80,
        True,
    )
    hopper = suites["gymnasium-mujoco"].examples[0]
    assert (hopper.env_id, hopper.observation_size, hopper.action_size, hopper.success) == ("Hopper-v5", 11, 3, False)
    for name, extra in (("dm_control", "dmc"), ("metaworld", "metaworld"), ("adroit", "robotics"), ("panda", "panda")):
        assert not suites[name].installed and suites[name].extra == extra
        assert all(example.observation_size is None for example in suites[name].examples)
    table = format_suites(list(suites.values()))
    assert 'dm_control: pip install "ace-rl[dmc]"' in table and 'pip install "ace-rl[all]"' in table


@pytest.mark.skipif(
    not all(installed(module) for module in ("dm_control", "metaworld", "gymnasium_robotics", "panda_gym")),
    reason='needs every suite: pip install "ace-rl[all]"',
)
def test_envs_command_lists_every_suite_with_its_sizes():
    result = subprocess.run([sys.executable, "-m", "ace_rl.cli", "envs"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.rstrip("\n").splitlines()
    header = ["suite", "id", "form", "installed", "extra", "example", "id", "obs", "act", "steps", "success"]
    assert lines[0].split() == header
    suite_names = ["gymnasium-mujoco", "dm_control", "metaworld", "adroit", "shadow hand", "panda", "robel d'kitty"]
    assert [line.split("  ")[0] for line in lines[1:] if not line.startswith(" ")] == suite_names
    assert all(" yes " in line for line in lines[1:] if not line.startswith(" "))  # every suite is installed
    assert "pip install" not in result.stdout
    # The last five cells of each row: example id, observation size, action size, episode steps, success.
    rows = {cells[-5]: tuple(cells[-4:]) for cells in (line.split() for line in lines[1:])}
    assert len(rows) == len(lines) - 1
    expected = {
        "Hopper-v5": ("11", "3", "1000", "no"),
        "dmc:walker-run": ("24", "6", "1000", "no"),
        "dmc:dog-run": ("223", "38", "1000", "no"),
        "metaworld:assembly-v3": ("39", "4", "200", "yes"),
        "AdroitHandDoor-v1": ("39", "28", "200", "yes"),
        "HandManipulateBlockDense-v1": ("68", "20", "100", "yes"),
        "DKittyStandRandom-v0": ("61", "12", "80", "yes"),
        "DKittyOrientRandom-v0": ("53", "12", "80", "yes"),
    }
    for env_id, cells in expected.items():
        assert rows[env_id] == cells, env_id
    # Sizes the suites report themselves, for a few ids built here.
    for env_id in ("Hopper-v5", "dmc:walker-run", "AdroitHandDoor-v1"):
        env = make_env(env_id)
        assert rows[env_id][:2] == (str(observation_size(env)), str(env.action_space.shape[0]))
        env.close()
