"""Interrupted runs: SIGKILL and resume, corrupted checkpoints, SIGTERM, non-finite losses."""

import csv
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from ace_rl.checkpoint import load_training_state
from ace_rl.config import preset_config
from ace_rl.rundir import RunDir
from ace_rl.trainer import NonFiniteError, Trainer, run_training

TINY = [
    "--env",
    "Hopper-v5",
    "--seed",
    "4",
    "--preset",
    "small",
    "--total-steps",
    "1600",
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
    "400",
    "--eval-episodes",
    "2",
    "--checkpoint-every",
    "250",
    "--threads",
    "1",
    "--no-progress",
]
# Every column but the wall time (and the fit's duration), which differ between processes.
COMPARED = {
    "metrics.csv": ["env_step", "updates", "eval_return_mean", "eval_return_std"],
    "episodes.csv": ["env_step", "episode", "return", "length", "terminated"],
    "causal_weights.csv": ["env_step", "w0", "w1", "w2", "method", "dropped_columns", "note"],
    "resets.csv": ["env_step", "update", "dormancy_ratio", "reset_factor", "kind"],
}


def ace_rl(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ace_rl.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=600)
    return process.returncode, stdout, stderr


def table(run_dir: Path, name: str) -> list[tuple]:
    with open(run_dir / name) as file:
        return [tuple(row[column] for column in COMPARED[name]) for row in csv.DictReader(file)]


def wait_for_state(run_dir: Path, count: int = 1, timeout: float = 300) -> None:
    """Wait for ``count`` complete checkpoints: a checkpoint's .sha256 is written after it."""
    deadline = time.time() + timeout
    while len(list((run_dir / "checkpoints").glob("state-*.pt.sha256"))) < count:
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("resume") / "reference"
    code, _, stderr = finish(ace_rl("train", *TINY, "--run-dir", str(run_dir)))
    assert code == 0, stderr
    return run_dir


def assert_same_logs(reference: Path, resumed: Path) -> None:
    for name in COMPARED:
        assert table(resumed, name) == table(reference, name), name


def test_sigkill_at_a_random_point_then_resume_matches_the_uninterrupted_run(reference_run: Path, tmp_path: Path):
    run_dir = tmp_path / "killed"
    process = ace_rl("train", *TINY, "--run-dir", str(run_dir))
    wait_for_state(run_dir)
    time.sleep(random.uniform(0.0, 2.0))
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    code, _, stderr = finish(ace_rl("train", "--resume", str(run_dir), "--no-progress"))
    assert code == 0, stderr
    assert_same_logs(reference_run, run_dir)


def test_corrupted_latest_checkpoint_is_skipped_for_the_previous_one(reference_run: Path, tmp_path: Path):
    run_dir = tmp_path / "corrupt"
    process = ace_rl("train", *TINY, "--run-dir", str(run_dir))
    wait_for_state(run_dir, count=2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # The newest complete checkpoint (the kill may have cut a later one short before its .sha256).
    newest = sorted(path.with_suffix("") for path in (run_dir / "checkpoints").glob("state-*.pt.sha256"))[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a write cut short
    code, _stdout, stderr = finish(ace_rl("train", "--resume", str(run_dir), "--no-progress"))
    assert code == 0, stderr
    assert f"ace-rl: skipped checkpoint {newest.name}: truncated or corrupted (SHA-256 mismatch)" in stderr
    assert_same_logs(reference_run, run_dir)


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(reference_run: Path, tmp_path: Path):
    run_dir = tmp_path / "terminated"
    process = ace_rl("train", *TINY, "--run-dir", str(run_dir))
    wait_for_state(run_dir)
    process.send_signal(signal.SIGTERM)
    code, _, stderr = finish(process)
    assert code == 0
    assert "stopped by SIGTERM at env step" in stderr and f"ace-rl train --resume {run_dir}" in stderr
    assert "Traceback" not in stderr
    state, _path, skipped = load_training_state(run_dir)
    assert skipped == [] and 0 < state["env_step"] < 1600
    code, _, stderr = finish(ace_rl("train", "--resume", str(run_dir), "--no-progress"))
    assert code == 0, stderr
    steps = [int(row[0]) for row in table(run_dir, "metrics.csv")]
    assert steps == [400, 800, 1200, 1600]  # no duplicated and no missing evaluation


def test_resume_refuses_contradicting_options_and_finished_runs(reference_run: Path):
    process = ace_rl("train", "--resume", str(reference_run), "--batch-size", "7")
    code, _, stderr = finish(process)
    assert code == 2
    assert stderr.startswith("ace-rl: error: --batch-size 7 contradicts the resumed run's batch_size = 64")
    code, _, stderr = finish(ace_rl("train", "--resume", str(reference_run)))
    assert code == 2 and "already reached 1600 env steps; pass a larger --total-steps" in stderr
    code, _, stderr = finish(ace_rl("train", "--resume", str(reference_run.parent / "missing")))
    assert code == 2 and f"--resume {reference_run.parent / 'missing'}: no such run directory" in stderr


class RewardBreaksAt(gym.Env):
    """s' = s + a; from its 300th step on the reward is 1e30: finite (a NaN reward is refused as the environment's
    fault, tests/test_user_faults.py), but its square overflows float32, so the critic's loss becomes inf."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    breaks_at = 300

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.normal(size=2).astype(np.float32)
        return self.state, {}

    def step(self, action):
        self.steps += 1
        self.state = (self.state + float(action[0])).astype(np.float32)
        reward = 1e30 if self.steps >= self.breaks_at else -float(np.abs(self.state).sum())
        return self.state, reward, False, False, {}


gym.register("RewardBreaksAt300-v0", entry_point=RewardBreaksAt, max_episode_steps=10)


def state_steps(run_dir: Path) -> list[int]:
    """The env steps of a run's full-state checkpoints (state-0000000300.pt: 300)."""
    return [int(path.name[len("state-") :].split(".")[0]) for path in RunDir(run_dir).states()]


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path: Path):
    run_dir = tmp_path / "nan"
    config = preset_config(
        "small",
        env="RewardBreaksAt300-v0",
        total_steps=600,
        start_steps=100,
        batch_size=32,
        hidden_size=16,
        causal_interval=1000,
        causal_samples=100,
        eval_every=1000,
        eval_episodes=1,
        checkpoint_every=20,
        threads=1,
        progress=False,
        run_dir=run_dir,
    )
    with pytest.raises(NonFiniteError) as error:
        run_training(config)
    message = str(error.value)
    found = re.fullmatch(
        r"loss/critic became (?:nan|inf) at env step (\d+) \(update (\d+)\); training stopped\. "
        r"Last good checkpoint: (\S+)",
        message,
    )
    assert found, message
    step, update, last_good = int(found[1]), int(found[2]), Path(found[3])
    # The first huge reward is stored at step 300; a batch that holds one makes the critic's loss inf. Updates
    # start at step 32, one per step.
    assert 300 <= step < 400 and update == step - 31
    # Checkpoints are written every 20 steps at episode ends; none from the step that failed or later.
    steps = state_steps(run_dir)
    assert steps and steps[-1] < step and steps[-1] >= (step // 20 - 1) * 20
    state, path, skipped = load_training_state(run_dir)
    assert skipped == [] and path == last_good and state["env_step"] == steps[-1]
    for network in ("actor", "critic", "critic_target"):
        assert all(torch.isfinite(value).all() for value in state["agent"][network].values()), network


def small_trainer(run_dir: Path) -> Trainer:
    config = preset_config(
        "small",
        env="Hopper-v5",
        total_steps=100,
        start_steps=50,
        batch_size=32,
        hidden_size=16,
        causal_interval=1000,
        causal_samples=50,
        eval_every=1000,
        eval_episodes=1,
        threads=1,
        progress=False,
        run_dir=run_dir,
    )
    RunDir(run_dir).checkpoints.mkdir(parents=True)
    return Trainer(config, run_dir)


@pytest.mark.parametrize(
    "network, parameter",
    [
        ("actor", "hidden.1.weight"),
        ("critic", "output.bias"),
        ("log_alpha", ""),
        ("critic_target", "hidden.0.weight"),
    ],
)
def test_a_non_finite_parameter_is_never_saved(tmp_path: Path, network: str, parameter: str):
    run_dir = tmp_path / "run"
    trainer = small_trainer(run_dir)
    try:
        for _ in range(40):  # a few real steps and updates
            trainer.step()
        trainer.save_state(mid_episode=True)
        good = {path.name: path.read_bytes() for path in RunDir(run_dir).checkpoints.iterdir()}
        assert len(state_steps(run_dir)) == 1
        with torch.no_grad():
            if network == "log_alpha":
                trainer.agent.log_alpha.fill_(float("inf"))
            else:
                dict(getattr(trainer.agent, network).named_parameters())[parameter].view(-1)[-1] = float("nan")
        with pytest.raises(NonFiniteError) as error:
            trainer.save_state(mid_episode=True)
        message = str(error.value)
        assert "\n" not in message
        assert f"is not finite at env step {trainer.env_step}; not saving it" in message
        assert (parameter or network) in message
        # Nothing written: the checkpoint directory is byte for byte what it was, no temporary file either.
        assert {path.name: path.read_bytes() for path in RunDir(run_dir).checkpoints.iterdir()} == good
    finally:
        trainer.close()


def test_a_finished_run_can_be_extended(reference_run: Path, tmp_path: Path):
    run_dir = tmp_path / "extended"
    shutil.copytree(reference_run, run_dir)
    code, _, stderr = finish(ace_rl("train", "--resume", str(run_dir), "--total-steps", "2000", "--no-progress"))
    assert code == 0, stderr
    assert [int(row[0]) for row in table(run_dir, "metrics.csv")] == [400, 800, 1200, 1600, 2000]
    assert json.loads((run_dir / "config.json").read_text())["total_steps"] == 2000
