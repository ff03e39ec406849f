"""Faults of the files a run writes besides its CSV rows: checkpoints and videos on a full disk, videos into a
read-only directory or under a file, run directories on a file system without locks, and a bad OpenGL setting.
Every fault is real: a small tmpfs filled by the run itself, a read-only mount (root only, skipped otherwise).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ace_rl.checkpoint import load_training_state
from ace_rl.rundir import RunDir
from tests.test_run_safety import TINY, assert_one_line_error, assert_whole_rows, rows, run, tmpfs


def assert_nothing_temporary(directory: Path) -> None:
    assert not list(directory.rglob("*.tmp")), sorted(directory.rglob("*"))


# --------------------------------------------------------------------------------------------------
# Checkpoints on a full disk
# --------------------------------------------------------------------------------------------------
def test_disk_full_during_the_first_full_state_checkpoint_is_one_line_and_leaves_no_temporary(tmp_path: Path):
    # 160 KiB hold the run's small files but not its first state-*.pt (about 170 KB: replay buffer and networks);
    # the disk fills in the middle of one of torch.save's records, which torch reports as a RuntimeError.
    with tmpfs(tmp_path / "disk", "160k") as disk:
        run_dir = disk / "run"
        code, stdout, stderr = run("train", *TINY, "--total-steps", "160", "--checkpoint-every", "150",
                                   "--causal-interval", "150", "--run-dir", str(run_dir))
        assert code == 1, stderr
        assert_one_line_error(stderr, "cannot write", str(RunDir(run_dir).checkpoints / "state-"),
                              "No space left on device")
        assert "run written" not in stdout
        assert_nothing_temporary(run_dir)
        assert RunDir(run_dir).states() == []
        assert json.loads(RunDir(run_dir).config.read_text())["total_steps"] == 160
        assert_whole_rows(run_dir)
        assert len(rows(run_dir / "episodes.csv")) >= 1


def test_disk_full_during_a_later_checkpoint_keeps_the_earlier_one_resumable(tmp_path: Path):
    # The first state-*.pt fits; the second (written at step 300) finds the disk full.
    with tmpfs(tmp_path / "disk", "320k") as disk:
        run_dir = disk / "run"
        code, _, stderr = run("train", *TINY, "--total-steps", "400", "--checkpoint-every", "150",
                              "--run-dir", str(run_dir))
        assert code == 1, stderr
        assert_one_line_error(stderr, f"cannot write {RunDir(run_dir).state(300)}: No space left on device")
        assert_nothing_temporary(run_dir)
        state, path, skipped = load_training_state(run_dir)
        assert skipped == [] and path == RunDir(run_dir).states()[-1] and 150 <= state["env_step"] < 300
        assert_whole_rows(run_dir)

        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)  # space is freed
        code, stdout, stderr = run("train", "--resume", str(run_dir), "--no-progress")
        assert code == 0, stderr
        assert [int(row["env_step"]) for row in rows(run_dir / "metrics.csv")] == [200, 400]
        assert_whole_rows(run_dir)
