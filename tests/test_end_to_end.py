"""The real command line and training loop on tiny budgets."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import lingam
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import ace_rl.trainer as train_module
from ace_rl.ace import ACE
from ace_rl.api import evaluate
from ace_rl.checkpoint import load_training_state
from ace_rl.config import preset_config
from ace_rl.replay import ReplayBuffer
from ace_rl.trainer import run_training

TINY = [
    "--preset",
    "small",
    "--total-steps",
    "1200",
    "--start-steps",
    "200",
    "--batch-size",
    "64",
    "--hidden-size",
    "64",
    "--causal-interval",
    "400",
    "--causal-samples",
    "300",
    "--reset-interval",
    "300",
    "--reset-start",
    "400",
    "--eval-every",
    "600",
    "--eval-episodes",
    "2",
    "--log-every",
    "200",
    "--threads",
    "1",
    "--no-progress",
]
TINY_SETTINGS = dict(
    total_steps=600,
    start_steps=100,
    batch_size=32,
    hidden_size=32,
    causal_interval=200,
    causal_samples=150,
    reset_interval=200,
    reset_start=100,
    eval_every=300,
    eval_episodes=1,
    log_every=100,
    threads=1,
    progress=False,
)


def ace_rl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ace_rl.cli", *args], capture_output=True, text=True, timeout=600)


def read_csv(path: Path) -> list[dict]:
    with open(path) as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("cli") / "hopper"
    result = ace_rl("train", "--env", "Hopper-v5", "--seed", "3", "--run-dir", str(run_dir), *TINY)
    assert result.returncode == 0, result.stderr
    assert f"run written to {run_dir}" in result.stdout
    return run_dir


def test_train_writes_every_file(trained_run: Path):
    config = json.loads((trained_run / "config.json").read_text())
    assert (config["env"], config["seed"], config["algo"], config["batch_size"], config["reset"]) == (
        "Hopper-v5",
        3,
        "ace",
        64,
        "reset",
    )
    assert (trained_run / "checkpoints" / "best.pt").is_file()
    assert (trained_run / "checkpoints" / "final.pt").is_file()

    metrics = read_csv(trained_run / "metrics.csv")
    assert [int(row["env_step"]) for row in metrics] == [600, 1200]
    assert [int(row["updates"]) for row in metrics] == [600 - 63, 1200 - 63]  # updates start with 64 stored
    assert all(np.isfinite(float(row["eval_return_mean"])) for row in metrics)

    causal = read_csv(trained_run / "causal_weights.csv")
    assert [int(row["env_step"]) for row in causal] == [400, 800, 1200]
    for row in causal:
        weights = [float(row[f"w{i}"]) for i in range(3)]
        assert sum(weights) == pytest.approx(3.0, abs=1e-4)
        assert row["method"] == "sink" and float(row["seconds"]) >= 0

    resets = read_csv(trained_run / "resets.csv")
    assert [int(row["update"]) for row in resets] == [600, 900]  # every 300 updates, only after 400
    for row in resets:
        assert 0.2 <= float(row["reset_factor"]) <= 0.9
        assert float(row["reset_factor"]) == pytest.approx(
            min(max(1 - float(row["dormancy_ratio"]), 0.2), 0.9), abs=1e-5
        )

    episodes = read_csv(trained_run / "episodes.csv")
    assert episodes and sum(int(row["length"]) for row in episodes) <= 1200
    steps = [int(row["env_step"]) for row in episodes]
    assert steps == sorted(steps)

    events = EventAccumulator(str(trained_run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {
        "loss/critic",
        "loss/actor",
        "loss/alpha",
        "alpha",
        "entropy",
        "causal/w0_thigh_joint",
        "eval/return_mean",
        "reset/factor",
    }
    assert expected <= tags
    assert [event.step for event in events.Scalars("eval/return_mean")] == [600, 1200]


def test_eval_runs_on_the_checkpoint_and_its_seed_decides_the_episodes(trained_run: Path):
    # Hopper-v5 starts every episode from a randomly perturbed state: the seed decides the returns.
    first = evaluate(trained_run, checkpoint="final", episodes=2, seed=1).returns
    again = evaluate(trained_run, checkpoint="final", episodes=2, seed=1).returns
    other = evaluate(trained_run, checkpoint="final", episodes=2, seed=2).returns  # what `ace-rl eval` runs
    np.testing.assert_array_equal(first, again)
    assert not np.any(np.isclose(first, other, rtol=1e-9, atol=0))  # every episode differs
    result = ace_rl("eval", str(trained_run), "--checkpoint", "final", "--episodes", "2", "--seed", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Hopper-v5 final: return {other.mean():.2f} +- {other.std():.2f}")
    assert "over 2 episodes" in result.stdout


def test_existing_run_dir_is_refused_and_left_intact(trained_run: Path):
    before = (trained_run / "metrics.csv").read_bytes()
    result = ace_rl("train", "--env", "Hopper-v5", "--run-dir", str(trained_run), *TINY)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"ace-rl: error: --run-dir {trained_run} already holds files; choose a new or empty directory "
        f"(or continue it with --resume {trained_run})"
    ]
    assert (trained_run / "metrics.csv").read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--env", "Hopprr-v5"], "unknown environment 'Hopprr-v5'"),
        (["train", "--env", "CartPole-v1"], "has Discrete actions; ACE needs continuous (Box) actions"),
        (["train", "--total-steps", "0"], "--total-steps must be a positive integer, got 0"),
        (["train", "--reset-interval", "-3"], "--reset-interval must be a positive integer, got -3"),
        (["eval", "no-such-run"], "no run directory at no-such-run"),
        (["fly"], "unknown command 'fly'; accepted: train, eval, envs"),
    ],
)
def test_bad_input_gives_one_line_error(tmp_path: Path, args, message):
    result = ace_rl(*args, *(["--run-dir", str(tmp_path / "run")] if args[0] == "train" else []))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ace-rl: error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_unknown_choice_names_the_accepted_values():
    result = ace_rl("train", "--causal-method", "pc")
    assert result.returncode == 2
    assert "sink" in result.stderr and "directlingam" in result.stderr
    assert "Traceback" not in result.stderr


def metric_rows(run_dir: Path) -> list[tuple]:
    return [(row["env_step"], row["updates"], row["eval_return_mean"]) for row in read_csv(run_dir / "metrics.csv")]


def test_runs_are_reproducible_on_cpu(tmp_path: Path):
    first = run_training(preset_config("small", env="Hopper-v5", seed=1, run_dir=tmp_path / "a", **TINY_SETTINGS))
    second = run_training(preset_config("small", env="Hopper-v5", seed=1, run_dir=tmp_path / "b", **TINY_SETTINGS))
    other_seed = run_training(preset_config("small", env="Hopper-v5", seed=2, run_dir=tmp_path / "c", **TINY_SETTINGS))
    assert metric_rows(first) == metric_rows(second)
    assert read_csv(first / "causal_weights.csv")[-1]["w0"] == read_csv(second / "causal_weights.csv")[-1]["w0"]
    assert metric_rows(first) != metric_rows(other_seed)


def test_sac_fits_no_causal_model_and_never_resets(tmp_path: Path):
    run_dir = run_training(preset_config("small", "sac", env="Hopper-v5", run_dir=tmp_path / "sac", **TINY_SETTINGS))
    assert read_csv(run_dir / "causal_weights.csv") == []
    assert read_csv(run_dir / "resets.csv") == []
    assert len(read_csv(run_dir / "metrics.csv")) == 2


@pytest.mark.parametrize("reset", ["causal_reset", "dormant_reset", "causal_dormant_reset"])
def test_every_reset_variant_trains(tmp_path: Path, reset):
    run_dir = run_training(
        preset_config("small", env="Hopper-v5", reset=reset, run_dir=tmp_path / reset, **TINY_SETTINGS)
    )
    resets = read_csv(run_dir / "resets.csv")
    # Updates start with 32 transitions stored (env step 32 makes update 1); every 200 updates after update 100.
    assert [(int(row["update"]), int(row["env_step"]), row["kind"]) for row in resets] == [
        (200, 231, reset),
        (400, 431, reset),
    ]
    fits = read_csv(run_dir / "causal_weights.csv")
    assert [int(row["env_step"]) for row in fits] == [200, 400, 600]
    for row in resets:
        ratio, factor = float(row["dormancy_ratio"]), float(row["reset_factor"])
        assert 0.0 <= ratio <= 1.0
        if reset.startswith("causal"):
            # From the spread of the causal weights in force: those of the latest fit before the reset.
            latest = [fit for fit in fits if int(fit["env_step"]) <= int(row["env_step"])][-1]
            weights = np.array([float(latest[f"w{i}"]) for i in range(3)])
            expected = np.clip(1.5 - np.exp(-8.0 * (weights.max() - weights.min())), 0.2, 0.9)
            # The CSV holds 6 significant digits: each weight (in [1, 3)) is off by up to 5e-6, the spread by up to
            # 1e-5, and the factor, whose slope 8 exp(-8 d) is at most 8, by up to 8e-5.
            tolerance = 1e-4
        else:
            expected = np.clip(1.0 - ratio, 0.2, 0.9)
            tolerance = 1e-5
        assert factor == pytest.approx(expected, abs=tolerance)
    assert all(np.isfinite(float(row["eval_return_mean"])) for row in read_csv(run_dir / "metrics.csv"))


def test_directlingam_method_trains(tmp_path: Path):
    run_dir = run_training(
        preset_config("small", env="Hopper-v5", causal_method="directlingam", run_dir=tmp_path / "dl", **TINY_SETTINGS)
    )
    causal = read_csv(run_dir / "causal_weights.csv")
    assert [row["method"] for row in causal] == ["directlingam"] * 3
    # Each fit recomputed with lingam's DirectLiNGAM on the latest 150 transitions before it, read back from the
    # final checkpoint's replay (which never wrapped): w = 3 softmax(b), b the reward's row at the action columns.
    state, _, _ = load_training_state(run_dir)
    replay = state["replay"]
    for row in causal:
        end = int(row["env_step"])
        rows = slice(end - 150, end)
        x = np.column_stack([replay["obs"][rows], replay["actions"][rows], replay["rewards"][rows]]).astype(np.float64)
        assert row["dropped_columns"] == "0"  # so lingam sees exactly these 15 columns
        model = lingam.DirectLiNGAM().fit(x)
        coefficients = model.adjacency_matrix_[-1, 11:14]
        expected = 3.0 * np.exp(coefficients) / np.exp(coefficients).sum()
        weights = np.array([float(row[f"w{i}"]) for i in range(3)])
        np.testing.assert_allclose(weights, expected, rtol=2e-5)
        assert weights.sum() == pytest.approx(3.0, abs=1e-4)
        reward_last = model.causal_order_[-1] == 14
        assert (row["note"] == "") == reward_last, row["note"]


def test_updates_per_step_and_policy_frequency(tmp_path: Path):
    run_dir = tmp_path / "k"
    result = ace_rl(
        "train",
        "--env",
        "Hopper-v5",
        "--preset",
        "small",
        "--total-steps",
        "300",
        "--start-steps",
        "100",
        "--batch-size",
        "32",
        "--hidden-size",
        "32",
        "--causal-interval",
        "150",
        "--causal-samples",
        "100",
        "--reset",
        "none",
        "--updates-per-step",
        "3",
        "--policy-frequency",
        "4",
        "--eval-every",
        "150",
        "--eval-episodes",
        "1",
        "--threads",
        "1",
        "--no-progress",
        "--run-dir",
        str(run_dir),
    )
    assert result.returncode == 0, result.stderr
    # Three updates on every env step from step 32 (the first with a batch stored).
    updates = [int(row["updates"]) for row in read_csv(run_dir / "metrics.csv")]
    assert updates == [(150 - 31) * 3, (300 - 31) * 3]
    # The optimizers' step counts: the critic on every update, the actor and temperature on every fourth.
    state, _, _ = load_training_state(run_dir)
    agent = state["agent"]
    assert agent["updates"] == 807

    def steps(optimizer_state: dict) -> set[int]:
        return {int(param_state["step"]) for param_state in optimizer_state["state"].values()}

    assert steps(agent["critic_optimizer"]) == {807}
    assert steps(agent["actor_optimizer"]) == {807 // 4} and steps(agent["alpha_optimizer"]) == {807 // 4}


class TimeLimitOnly(gym.Env):
    """Never terminates; only the TimeLimit wrapper ends its episodes (by truncation)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.normal(size=2).astype(np.float32)
        return self.state, {}

    def step(self, action):
        self.state = (self.state + float(action[0])).astype(np.float32)
        return self.state, -float(np.abs(self.state).sum()), False, False, {}


class FallsAtOnce(TimeLimitOnly):
    """Terminates on every step."""

    def step(self, action):
        obs, reward, _, _, info = super().step(action)
        return obs, reward, True, False, info


gym.register("TimeLimitOnly-v0", entry_point=TimeLimitOnly, max_episode_steps=10)
gym.register("FallsAtOnce-v0", entry_point=FallsAtOnce, max_episode_steps=10)


def keep_instances(monkeypatch, cls: type) -> list:
    """Every instance of ``cls`` that the training run builds, however it builds it."""
    instances = []
    original_init = cls.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        instances.append(self)

    monkeypatch.setattr(cls, "__init__", init)
    return instances


@pytest.mark.parametrize("env_id, terminated", [("TimeLimitOnly-v0", False), ("FallsAtOnce-v0", True)])
def test_truncation_bootstraps_and_termination_does_not(tmp_path: Path, monkeypatch, env_id, terminated):
    buffers, agents = keep_instances(monkeypatch, ReplayBuffer), keep_instances(monkeypatch, ACE)
    run_dir = run_training(preset_config("small", env=env_id, run_dir=tmp_path / "run", **TINY_SETTINGS))
    replay, agent = buffers[0], agents[0]
    assert len(replay) == 600
    # Terminal transitions stop bootstrapping; time-limit ends are stored as episode ends that bootstrap.
    assert replay.terminated[:600].tolist() == [terminated] * 600
    expected_ends = [True] * 600 if terminated else [(step + 1) % 10 == 0 for step in range(600)]
    assert replay.episode_end[:600].tolist() == expected_ends
    episodes = read_csv(run_dir / "episodes.csv")
    assert {row["length"] for row in episodes} == {"1" if terminated else "10"}
    assert {row["terminated"] for row in episodes} == {str(int(terminated))}

    # The critic's target for episode-ending transitions, by hand: r + gamma (min Q'(s', a') - alpha log pi_w(a'|s'))
    # after a time limit, r alone after a terminal state.
    alpha = agent.alpha
    for index in [9, 299, 599]:  # the ends of the 1st, 30th and 60th ten-step episodes
        rows = torch.tensor([index])
        obs, actions, rewards = replay.obs[rows], replay.actions[rows], replay.rewards[rows]
        next_obs = replay.next_observations(rows)
        # The dynamics are s' = s + a: the stored next observation is the episode's last, not the next start.
        torch.testing.assert_close(next_obs, obs + actions[:, :1])
        torch.manual_seed(index)
        loss, q_values = agent.critic_loss(obs, actions, rewards, next_obs, replay.terminated[rows].float(), alpha)
        torch.manual_seed(index)
        with torch.no_grad():
            next_actions, next_log_prob = agent.actor.sample(next_obs, agent.causal_weights)
            next_q = agent.critic_target(next_obs, next_actions).min(dim=0).values
        bootstrapped = rewards + 0.99 * (next_q - alpha * next_log_prob)
        with_bootstrap = ((q_values - bootstrapped) ** 2).sum()
        without_bootstrap = ((q_values - rewards) ** 2).sum()
        assert not torch.isclose(with_bootstrap, without_bootstrap)
        torch.testing.assert_close(loss.detach(), without_bootstrap if terminated else with_bootstrap)


def test_directlingam_time_limit_refuses_before_anything_is_written(tmp_path: Path):
    run_dir = tmp_path / "humanoid"
    result = ace_rl(
        "train",
        "--env",
        "Humanoid-v5",
        "--causal-method",
        "directlingam",
        "--causal-time-limit",
        "60",
        "--run-dir",
        str(run_dir),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--causal-method directlingam on 366 variables and 10000 samples" in lines[0]
    assert "over --causal-time-limit 60" in lines[0]
    assert not run_dir.exists()


def test_slow_directlingam_without_a_limit_is_announced(capsys):
    config = preset_config("paper", env="Humanoid-v5", causal_method="directlingam")
    train_module.check_causal_time_limit(config, n_variables=366)
    assert "each DirectLiNGAM fit on 366 variables will take about" in capsys.readouterr().err
    train_module.check_causal_time_limit(preset_config("paper", causal_method="sink"), n_variables=366)
    assert capsys.readouterr().err == ""
