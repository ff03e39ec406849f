"""Interrupted runs: SIGKILL and resume, corrupted checkpoints, SIGTERM, non-finite losses."""

import csv
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ace_rl.ace as ace_module
from ace_rl.checkpoint import load_training_state
from ace_rl.config import preset_config
from ace_rl.train import NonFiniteError, train

TINY = [
    "--env", "Hopper-v5", "--seed", "4", "--preset", "small", "--total-steps", "1600", "--start-steps", "200",
    "--batch-size", "64", "--hidden-size", "64", "--causal-interval", "400", "--causal-samples", "300",
    "--reset-interval", "300", "--reset-start", "400", "--eval-every", "400", "--eval-episodes", "2",
    "--checkpoint-every", "250", "--threads", "1", "--no-progress",
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
    deadline = time.time() + timeout
    while len(list((run_dir / "checkpoints").glob("state-*.pt"))) < count:
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
    newest = sorted((run_dir / "checkpoints").glob("state-*.pt"))[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a write cut short
    code, stdout, stderr = finish(ace_rl("train", "--resume", str(run_dir), "--no-progress"))
    assert code == 0, stderr
    assert f"skipped checkpoint {newest.name}: truncated or corrupted (SHA-256 mismatch)" in stdout
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
    state, path, skipped = load_training_state(run_dir)
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
    assert code == 2 and "no run there (config.json is missing)" in stderr


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path: Path, monkeypatch):
    original_update = ace_module.ACE.update

    def update_that_breaks(self, batch):
        metrics, reset = original_update(self, batch)
        if self.updates == 700:
            metrics["loss/critic"] = torch.tensor(float("nan"))
        return metrics, reset

    monkeypatch.setattr(ace_module.ACE, "update", update_that_breaks)
    config = preset_config(
        "small", env="Hopper-v5", total_steps=1500, start_steps=100, batch_size=32, hidden_size=32,
        causal_interval=300, causal_samples=200, eval_every=500, eval_episodes=1, checkpoint_every=200,
        threads=1, progress=False, run_dir=tmp_path / "nan",
    )
    with pytest.raises(NonFiniteError, match=r"loss/critic became nan at env step 731 \(update 700\)"):
        train(config)
    state, path, skipped = load_training_state(tmp_path / "nan")
    assert skipped == [] and state["env_step"] < 731
    assert all(int(p.name[6:16]) < 731 for p in (tmp_path / "nan" / "checkpoints").glob("state-*.pt"))


def test_a_finished_run_can_be_extended(reference_run: Path, tmp_path: Path):
    run_dir = tmp_path / "extended"
    shutil.copytree(reference_run, run_dir)
    code, _, stderr = finish(ace_rl("train", "--resume", str(run_dir), "--total-steps", "2000", "--no-progress"))
    assert code == 0, stderr
    assert [int(row[0]) for row in table(run_dir, "metrics.csv")] == [400, 800, 1200, 1600, 2000]
    assert json.loads((run_dir / "config.json").read_text())["total_steps"] == 2000
