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


# --------------------------------------------------------------------------------------------------
# Videos that cannot be written
# --------------------------------------------------------------------------------------------------
needs_ffmpeg = pytest.mark.skipif(
    importlib.util.find_spec("imageio_ffmpeg") is None, reason='imageio-ffmpeg is not installed: pip install "ace-rl[video]"'
)


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ace_rl import video

    try:
        video.select_gl_backend()
    except video.VideoError as error:
        pytest.skip(f"no OpenGL back-end for MuJoCo rendering: {error}")
    run_dir = tmp_path_factory.mktemp("media") / "pendulum"
    code, _, stderr = run("train", *TINY, "--total-steps", "200", "--run-dir", str(run_dir))
    assert code == 0, stderr
    return run_dir


def eval_video(run_dir: Path, target: Path) -> tuple[int, str, str]:
    return run("eval", str(run_dir), "--episodes", "2", "--video", str(target))


@needs_ffmpeg
def test_eval_video_on_a_full_disk_is_an_error_and_leaves_no_file(pendulum_run: Path, tmp_path: Path):
    with tmpfs(tmp_path / "disk", "4k") as disk:  # one page: the MP4 (about 6 KB) does not fit
        target = disk / "pendulum.mp4"
        code, stdout, stderr = eval_video(pendulum_run, target)
        assert code == 1
        assert_one_line_error(stderr, f"cannot write {target}: ", "No space left on device")
        assert "video written" not in stdout
        assert list(disk.iterdir()) == []  # neither a truncated MP4 nor its temporary file


@needs_ffmpeg
def test_eval_video_into_a_read_only_directory_or_under_a_file_is_one_line(pendulum_run: Path, tmp_path: Path):
    a_file = tmp_path / "afile"
    a_file.write_text("not a directory")
    code, stdout, stderr = eval_video(pendulum_run, a_file / "x.mp4")
    assert code == 1 and stdout == ""
    assert_one_line_error(stderr, f"cannot write {a_file / 'x.mp4'}: {a_file} is not a directory")
    assert a_file.read_text() == "not a directory"

    with tmpfs(tmp_path / "ro", "1m") as read_only:
        subprocess.run(["mount", "-o", "remount,ro", str(read_only)], check=True)
        code, stdout, stderr = eval_video(pendulum_run, read_only / "x.mp4")
        assert code == 1 and stdout == ""
        assert_one_line_error(stderr, f"cannot write {read_only / 'x.mp4'}: Read-only file system")
        assert list(read_only.iterdir()) == []
