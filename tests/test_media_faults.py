"""Faults of the files a run writes besides its CSV rows: checkpoints and videos on a full disk, videos into a
read-only directory or under a file, run directories on a file system without locks, and a bad OpenGL setting.
Every fault is real: a small tmpfs filled by the run itself, a read-only mount, and a FUSE mount whose file system
refuses flock (root only, skipped otherwise; the FUSE test also needs /dev/fuse, mfusepy and libfuse2).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ace_rl.checkpoint import load_training_state, write_atomically
from ace_rl.rundir import RunDir, RunDirBusy, RunDirError, is_locked
from test_run_safety import TINY, assert_one_line_error, assert_whole_rows, rows, run, tmpfs


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
        code, stdout, stderr = run(
            "train",
            *TINY,
            "--total-steps",
            "160",
            "--checkpoint-every",
            "150",
            "--causal-interval",
            "150",
            "--run-dir",
            str(run_dir),
        )
        assert code == 1, stderr
        assert_one_line_error(
            stderr, "cannot write", str(RunDir(run_dir).checkpoints / "state-"), "No space left on device"
        )
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
        code, _, stderr = run(
            "train", *TINY, "--total-steps", "400", "--checkpoint-every", "150", "--run-dir", str(run_dir)
        )
        assert code == 1, stderr
        # Checkpoints fall on the first episode end after every 150 steps: the second at step 300 or a few after.
        failed = re.search(r"cannot write (\S+): No space left on device", stderr)
        assert failed, stderr
        assert_one_line_error(stderr, failed[0])
        failed_steps = [step for step in range(300, 400) if str(RunDir(run_dir).state(step)) == failed[1]]
        assert len(failed_steps) == 1, failed[1]
        assert_nothing_temporary(run_dir)
        state, path, skipped = load_training_state(run_dir)
        assert skipped == [] and path == RunDir(run_dir).states()[-1] and 150 <= state["env_step"] < 300
        assert_whole_rows(run_dir)

        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)  # space is freed
        code, _stdout, stderr = run("train", "--resume", str(run_dir), "--no-progress")
        assert code == 0, stderr
        assert [int(row["env_step"]) for row in rows(run_dir / "metrics.csv")] == [200, 400]
        assert_whole_rows(run_dir)


def test_an_error_of_the_writer_itself_is_not_taken_for_a_full_disk(tmp_path: Path):
    def broken_writer(file) -> None:
        file.write(b"half")
        raise RuntimeError("the writer's own bug")

    with pytest.raises(RuntimeError, match="the writer's own bug") as raised:
        write_atomically(tmp_path / "file.bin", broken_writer)
    assert not isinstance(raised.value, RunDirError)
    assert list(tmp_path.iterdir()) == []  # nor a temporary file


# --------------------------------------------------------------------------------------------------
# Videos that cannot be written
# --------------------------------------------------------------------------------------------------
needs_ffmpeg = pytest.mark.skipif(
    importlib.util.find_spec("imageio_ffmpeg") is None,
    reason='imageio-ffmpeg is not installed: pip install "ace-rl[video]"',
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


@needs_ffmpeg
def test_training_video_on_a_full_disk_stops_the_run_in_one_line_and_leaves_no_file(tmp_path: Path):
    run_dir = tmp_path / "run"
    code, _, stderr = run("train", *TINY, "--total-steps", "200", "--run-dir", str(run_dir))
    assert code == 0, stderr
    videos = RunDir(run_dir).videos
    # Only the videos folder is full (one page, taken by a filler): the run's other files have room.
    with tmpfs(videos, "4k"):
        (videos / "filler").write_bytes(b"\0" * 4096)
        code, stdout, stderr = run(
            "train", "--resume", str(run_dir), "--total-steps", "300", "--video-every", "100", "--no-progress"
        )
        assert code == 1 and "run written" not in stdout
        assert_one_line_error(stderr, f"cannot write {RunDir(run_dir).training_video(300)}: No space left on device")
        assert [path.name for path in videos.iterdir()] == ["filler"]  # no truncated MP4, no temporary
    assert_nothing_temporary(run_dir)
    state, _, skipped = load_training_state(run_dir)
    assert skipped == [] and state["env_step"] == 200
    assert_whole_rows(run_dir)


# --------------------------------------------------------------------------------------------------
# A file system without locks
# --------------------------------------------------------------------------------------------------
@contextmanager
def file_system_without_flock(path: Path) -> Iterator[Path]:
    """A mount point under ``path`` of tests/fuse_without_flock.py (root, /dev/fuse, mfusepy and libfuse2 needed)."""
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("a FUSE mount needs root and /dev/fuse")
    if importlib.util.find_spec("mfusepy") is None:
        pytest.skip("mfusepy is not installed (pip install mfusepy; apt-get install libfuse2)")
    root, mountpoint = path / "root", path / "mount"
    root.mkdir(parents=True)
    mountpoint.mkdir()
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("fuse_without_flock.py")), str(root), str(mountpoint)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while not os.path.ismount(mountpoint):
            if server.poll() is not None or time.time() > deadline:
                pytest.skip(f"cannot mount a FUSE file system here: {server.communicate(timeout=10)[1].strip()}")
            time.sleep(0.05)
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def test_a_file_system_without_locks_is_named_in_one_line_and_never_reported_as_locked(tmp_path: Path):
    with file_system_without_flock(tmp_path / "fuse") as mount:
        run_dir = mount / "run"
        code, stdout, stderr = run("train", *TINY, "--total-steps", "200", "--run-dir", str(run_dir))
        assert code == 1 and "run written" not in stdout
        assert_one_line_error(
            stderr,
            f"the file system of {run_dir} does not support file locks (flock: ",
            "put runs and sweeps on a local file system",
        )

        assert (run_dir / ".lock").is_file()  # left by the refused train: a sweep must not take it for a live run
        with pytest.raises(RunDirError, match="does not support file locks") as refused:
            is_locked(run_dir)
        assert not isinstance(refused.value, RunDirBusy)
        assert not is_locked(mount)  # no lock file: nothing to test


# --------------------------------------------------------------------------------------------------
# A PyOpenGL platform that no MuJoCo back-end accepts
# --------------------------------------------------------------------------------------------------
@needs_ffmpeg
@pytest.mark.parametrize(
    ("setting", "fragments"),
    [
        (
            {"PYOPENGL_PLATFORM": "nonsense"},
            (
                "PYOPENGL_PLATFORM=nonsense is not an OpenGL platform for headless rendering (accepted: egl, osmesa)",
                "unset it",
            ),
        ),
        (
            {"PYOPENGL_PLATFORM": "glx", "MUJOCO_GL": "osmesa"},
            ("MUJOCO_GL=osmesa and PYOPENGL_PLATFORM=glx name different OpenGL back-ends", "unset PYOPENGL_PLATFORM"),
        ),
    ],
)
def test_a_pyopengl_platform_that_no_back_end_accepts_is_named(setting: dict, fragments: tuple, pendulum_run: Path):
    environment = {key: value for key, value in os.environ.items() if key not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    result = subprocess.run(
        [sys.executable, "-m", "ace_rl.cli", "eval", str(pendulum_run), "--episodes", "1", "--video"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**environment, **setting},
    )
    assert result.returncode == 2 and result.stdout == ""
    assert_one_line_error(result.stderr, *fragments)
    assert "{!r}" not in result.stderr and "install" not in result.stderr  # nothing to install: a setting to fix
    assert not RunDir(pendulum_run).videos.exists()
