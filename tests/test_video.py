"""Videos: real frames from every installed suite, MP4 files read back with imageio, `ace-rl eval RUN --video`,
the training-time recorder (with TensorBoard), and the one-line errors where no OpenGL back-end works.

Needs the video extra (imageio with ffmpeg); the MuJoCo-based suites also need EGL or OSMesa
(`apt-get install libosmesa6`), without which their rendering tests are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ace_rl
from ace_rl import video
from ace_rl.cli import main
from ace_rl.envs import make_env, seed_env
from ace_rl.rundir import RunDir

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("imageio_ffmpeg") is None,
    reason='imageio-ffmpeg is not installed: pip install "ace-rl[video]"',
)

SUITE_MODULES = {
    "Hopper-v5": "mujoco",
    "dmc:walker-run": "dm_control",
    "metaworld:button-press-v3": "metaworld",
    "AdroitHandDoor-v1": "gymnasium_robotics",
    "HandManipulateBlockDense-v1": "gymnasium_robotics",
    "PandaReachJoints-v3": "panda_gym",
}


@pytest.fixture(scope="module")
def opengl() -> str:
    try:
        return video.select_gl_backend()
    except video.VideoError as error:
        pytest.skip(f"no OpenGL back-end for MuJoCo rendering: {error}")


def needs_suite(env_id: str) -> None:
    if importlib.util.find_spec(SUITE_MODULES[env_id]) is None:
        pytest.skip(f'{SUITE_MODULES[env_id]} is not installed (pip install "ace-rl[all]")')


def read_video(path: Path) -> tuple[np.ndarray, dict]:
    """Every frame of an MP4 file, decoded by imageio's ffmpeg plugin, and its metadata."""
    import imageio.v2 as imageio

    reader = imageio.get_reader(path, format="FFMPEG")
    try:
        return np.stack(list(reader.iter_data())), reader.get_meta_data()
    finally:
        reader.close()


def assert_real_frames(first: np.ndarray, later: np.ndarray) -> None:
    """RGB frames that show a scene: many distinct values across the frame, and motion between steps."""
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3 and first.shape == later.shape
    for frame in (first, later):
        assert frame.std() > 10 and len(np.unique(frame.reshape(-1, 3), axis=0)) > 50
    assert np.abs(first.astype(int) - later.astype(int)).max() > 30


@pytest.mark.parametrize("env_id", sorted(SUITE_MODULES))
def test_every_installed_suite_renders_real_frames(env_id: str, request):
    needs_suite(env_id)
    if video.needs_opengl(env_id):
        request.getfixturevalue("opengl")
    env = video.make_render_env(env_id)
    seed_env(env, 0)
    first = env.render()
    for action in np.random.default_rng(0).uniform(-1, 1, size=(5, *env.action_space.shape)):
        env.step(action.astype(np.float32))
    assert_real_frames(first, env.render())
    env.close()


def pendulum_steps(action: float, seed: int) -> int:
    """Length of an InvertedPendulum-v5 episode under a constant action, without rendering."""
    env = make_env("InvertedPendulum-v5")
    seed_env(env, seed)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(np.array([action], dtype=np.float32))
        steps += 1
        done = terminated or truncated
    env.close()
    return steps


def test_mp4_holds_every_frame_of_the_recorded_episodes(opengl, tmp_path: Path):
    push = lambda obs: np.array([0.5], dtype=np.float32)  # noqa: E731  (the pole falls within a few dozen steps)
    path = video.record_episodes(push, "InvertedPendulum-v5", "dense", 3, 2, tmp_path / "clip.mp4")
    frames, meta = read_video(path)
    env = make_env("InvertedPendulum-v5")
    seed_env(env, 3)
    lengths = []
    for _ in range(2):  # the same episodes without rendering: a reset frame plus one frame per step each
        steps, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step(np.array([0.5], dtype=np.float32))
            steps += 1
            done = terminated or truncated
        lengths.append(steps)
        env.reset()
    assert frames.shape == (sum(lengths) + 2, 480, 480, 3)
    assert meta["fps"] == 25.0  # InvertedPendulum-v5's render_fps: real time
    rendered = video.make_render_env("InvertedPendulum-v5")
    seed_env(rendered, 3)
    start = rendered.render()
    rendered.close()
    assert np.abs(frames[0].astype(float) - start).mean() < 3  # H.264 is lossy, but close to the source
    assert_real_frames(frames[0], frames[lengths[0] // 2])


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("video") / "pendulum"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ace_rl.cli",
            "train",
            "--env",
            "InvertedPendulum-v5",
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
            "1",
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
    return run_dir


def test_eval_video_writes_the_evaluated_episodes(opengl, pendulum_run: Path, tmp_path: Path, capsys):
    result = subprocess.run(
        [sys.executable, "-m", "ace_rl.cli", "eval", str(pendulum_run), "--episodes", "2", "--seed", "5", "--video"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    path = RunDir(pendulum_run).eval_video("best")
    assert path == pendulum_run / "videos" / "eval-best.mp4"
    assert f"video written to {path}" in result.stdout
    plain = ace_rl.evaluate(pendulum_run, episodes=2, seed=5)  # the same evaluation without a video
    assert result.stdout.splitlines()[0] == (
        f"InvertedPendulum-v5 best: return {plain.mean:.2f} +- {plain.std:.2f} over 2 episodes"
    )
    frames, _ = read_video(path)
    # InvertedPendulum-v5 pays 1 for every step but the one where the pole falls, so an episode that falls lasts
    # its return + 1 steps; the video has a frame for every step and every episode's start.
    assert (plain.returns < 1000).all()  # untrained: both episodes fall
    assert len(frames) == sum(int(episode_return) + 1 for episode_return in plain.returns) + 2

    chosen = tmp_path / "chosen" / "pendulum.mp4"
    main(["eval", str(pendulum_run), "--episodes", "1", "--video", str(chosen)])
    assert f"video written to {chosen}" in capsys.readouterr().out
    assert read_video(chosen)[0].shape[1:] == (480, 480, 3)


def eval_video_error(run_dir: Path, **environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    return subprocess.run(
        [sys.executable, "-m", "ace_rl.cli", "eval", str(run_dir), "--episodes", "1", "--video"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, **environment},
    )


def test_a_back_end_that_does_not_work_is_a_one_line_error(pendulum_run: Path):
    result = eval_video_error(pendulum_run, MUJOCO_GL="nonsense")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("ace-rl: error: cannot render with the OpenGL back-end MUJOCO_GL=nonsense (")
    assert "invalid value for environment variable MUJOCO_GL: nonsense" in result.stderr
    assert "set MUJOCO_GL to egl or osmesa, or unset it" in result.stderr


def test_no_working_back_end_names_what_to_install(monkeypatch):
    # Mesa (OSMesa, and Mesa's EGL) cannot start with a Gallium driver that does not exist, so both candidates
    # fail in their probe subprocesses, which inherit it, as on a machine without their libraries.
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    monkeypatch.setenv("GALLIUM_DRIVER", "nonsense")
    monkeypatch.setattr(video, "_selected_backend", None)
    try:
        backend = video.select_gl_backend()
    except video.VideoError as error:
        message = str(error)
    else:
        pytest.skip(f"{backend} renders without Mesa here (a GPU driver's EGL)")
    assert "\n" not in message and message.startswith("no OpenGL back-end for headless rendering works (egl: ")
    assert "; osmesa: " in message and "apt-get install libosmesa6" in message
    assert "MUJOCO_GL" not in os.environ and "PYOPENGL_PLATFORM" not in os.environ  # nothing chosen


def test_training_video_records_the_same_start_and_reaches_tensorboard(opengl, tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    recorder = video.TrainingVideo(tmp_path, "InvertedPendulum-v5", "dense", seed=11)
    writer = SummaryWriter(str(tmp_path / "tensorboard"))
    push = lambda obs: np.array([0.5], dtype=np.float32)  # noqa: E731
    clips = [recorder.record(push, env_step, tensorboard=writer) for env_step in (500, 1000)]
    writer.close()
    recorder.close()
    expected_frames = pendulum_steps(0.5, 11) + 1  # the recorder reseeds: every clip starts the same way
    for clip, name in zip(clips, ("step-00000500.mp4", "step-00001000.mp4")):
        assert clip.path == tmp_path / "videos" / name
        frames, _ = read_video(clip.path)
        assert len(frames) == clip.frames == expected_frames
        assert clip.episode_return == expected_frames - 2  # InvertedPendulum-v5: 1 per step, 0 for the fall
        # InvertedPendulum-v5 episodes may last 1000 steps: TensorBoard keeps every 6th frame, every 3rd pixel.
        assert clip.tensorboard_frames.shape == (-(-expected_frames // 6), 160, 160, 3)
    np.testing.assert_array_equal(read_video(clips[0].path)[0], read_video(clips[1].path)[0])
    if video.tensorboard_video_available():
        events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={IMAGES: 0})
        events.Reload()
        stored = events.Images("eval/video")
        assert [image.step for image in stored] == [500, 1000]
        import imageio.v3 as iio

        gif = iio.imread(stored[0].encoded_image_string, extension=".gif", index=None)
        assert gif.shape[0] == -(-expected_frames // 6) and gif.shape[1:3] == (160, 160)


def test_tensorboard_frames_stay_small():
    small = video.TensorBoardFrames(max_steps=999, fps=125.0)
    frame = np.arange(480 * 720 * 3, dtype=np.uint32).reshape(480, 720, 3).astype(np.uint8)
    for _ in range(1000):
        small.append(frame)
    clip = small.clip()
    assert clip.shape == (200, 480 // 5, 720 // 5, 3)  # every 5th of 1000 frames; every 5th pixel of 720
    np.testing.assert_array_equal(clip[0], frame[::5, ::5])
    assert small.fps == 25.0
