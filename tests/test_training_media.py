"""`ace-rl train --video-every` and `--wandb-project` through the real command: videos in the run directory,
and a W&B run (offline) that receives the training's scalars and continues on --resume."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ace_rl.rundir import RunDir
from test_video import opengl, read_video  # noqa: F401 - opengl is a fixture
from test_wandb import finished_records, history_rows, of_kind, offline_run_files

TINY = [
    "--env",
    "InvertedPendulum-v5",
    "--preset",
    "small",
    "--start-steps",
    "100",
    "--batch-size",
    "32",
    "--hidden-size",
    "32",
    "--eval-every",
    "150",
    "--eval-episodes",
    "1",
    "--threads",
    "1",
    "--no-progress",
]


def train(*args: str, **environment: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ace_rl.cli", "train", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **environment},
    )


@pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is None, reason='pip install "ace-rl[video]"')
def test_video_every_records_episodes_into_the_run(opengl, tmp_path: Path):  # noqa: F811
    run_dir = tmp_path / "run"
    result = train(*TINY, "--total-steps", "300", "--video-every", "150", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    videos = sorted(RunDir(run_dir).path.glob("videos/step-*.mp4"))
    assert [path.name for path in videos] == ["step-00000150.mp4", "step-00000300.mp4"]
    for path in videos:
        frames, _ = read_video(path)
        assert frames.shape[0] >= 2 and frames.std() > 10
    # Recording draws nothing from training's random streams: the same run without videos logs the same rows.
    plain = tmp_path / "plain"
    result = train(*TINY, "--total-steps", "300", "--run-dir", str(plain))
    assert result.returncode == 0, result.stderr
    for name in ("episodes.csv", "metrics.csv"):
        with open(run_dir / name) as file, open(plain / name) as other:
            drop = lambda row: {k: v for k, v in row.items() if k != "wall_time"}  # noqa: E731
            assert [drop(row) for row in csv.DictReader(file)] == [drop(row) for row in csv.DictReader(other)]


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason='pip install "ace-rl[wandb]"')
def test_wandb_receives_the_training_and_a_resume_continues_the_same_run(tmp_path: Path):
    wandb_dir = tmp_path / "wandb_dir"
    wandb_dir.mkdir()
    environment = {"WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir), "WANDB_SILENT": "true"}
    run_dir = tmp_path / "run"
    result = train(
        *TINY,
        "--total-steps",
        "300",
        "--log-every",
        "50",
        "--run-dir",
        str(run_dir),
        "--wandb-project",
        "ace-test",
        "--wandb-tags",
        "tiny",
        "e2e",
        **environment,
    )
    assert result.returncode == 0, result.stderr
    run_id = RunDir(run_dir).wandb_id.read_text().strip()
    result = train("--resume", str(run_dir), "--total-steps", "450", "--no-progress", **environment)
    assert result.returncode == 0, result.stderr
    assert RunDir(run_dir).wandb_id.read_text().strip() == run_id

    first, second = (finished_records(path) for path in offline_run_files(wandb_dir, run_id))
    assert [run.run_id for run in of_kind(second, "run")] == [run_id]
    rows = history_rows(first)
    evaluations = [row for row in rows if "eval/return_mean" in row]
    with open(run_dir / "metrics.csv") as file:
        metrics = list(csv.DictReader(file))
    assert [row["env_step"] for row in evaluations] == [150, 300]
    np.testing.assert_allclose(
        [row["eval/return_mean"] for row in evaluations],
        [float(row["eval_return_mean"]) for row in metrics[:2]],
        rtol=1e-5,
    )
    assert any("loss/critic" in row for row in rows)
    later = [row["env_step"] for row in history_rows(second) if "eval/return_mean" in row]
    assert later == [450]
    tables = [row for row in rows if "eval/table/path" in row]
    assert [row["env_step"] for row in tables] == [150, 300]
    files = offline_run_files(wandb_dir, run_id)[0].parent / "files"
    table = json.loads((files / tables[-1]["eval/table/path"]).read_text())
    assert [row[0] for row in table["data"]] == [150, 300]  # metrics.csv as it stood at env step 300
