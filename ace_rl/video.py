"""Videos of policies: MP4 files written by imageio's ffmpeg plugin from the frames of ``env.render()``.

Every suite renders through `make_env(..., render_mode="rgb_array")`: Gymnasium MuJoCo, Meta-World, Adroit and
Shadow Hand through Gymnasium's MuJoCo renderer, dm_control through ``physics.render``, Panda through
PyBullet's TinyRenderer (software, no OpenGL needed).

The OpenGL back-end rule (MuJoCo-based suites): a back-end is fixed once per process, when MuJoCo's renderer
or dm_control first loads OpenGL, so `select_gl_backend` chooses it before that and keeps it:

- a back-end the user named (``MUJOCO_GL``, else ``PYOPENGL_PLATFORM``) is used, after checking that it works;
- a ``PYOPENGL_PLATFORM`` that MuJoCo's EGL and OSMesa back-ends refuse (neither ``egl`` nor ``osmesa``, or
  not the ``MUJOCO_GL`` named) is a one-line `VideoError` naming it, before anything is tried;
- otherwise EGL (GPU, headless), then OSMesa (software);
- each candidate is tried by rendering one small frame in a subprocess (a failed EGL would otherwise leave this
  process unable to try OSMesa); the winner goes into ``MUJOCO_GL`` (inherited by child processes);
- where none works, a one-line `VideoError` names what to install.

Entry points: `record_episodes` (a policy on a fresh environment, to a file), `recording` (an environment whose
episodes go to a file: ``ace_rl.evaluate(..., video=PATH)`` and so ``ace-rl eval RUN --video``) and `TrainingVideo` (``--video-every``: one
deterministic episode every N env steps into ``RUN/videos/step-XXXXXXXX.mp4``, and into TensorBoard).
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ace_rl.envs import EnvFactory, episode_steps, make_env, seed_env
from ace_rl.errors import AceRlError
from ace_rl.evaluation import ActionFunction, run_episodes
from ace_rl.extras import install_hint, missing_modules
from ace_rl.rundir import TEMPORARY_SUFFIX, RunDir, RunDirError
from ace_rl.suites import panda

GL_BACKENDS: tuple[str, ...] = ("egl", "osmesa")
"""Tried in this order when the user names none."""
INSTALL_HINT = (
    "install OSMesa (Debian/Ubuntu: apt-get install libosmesa6) or, on a GPU machine, EGL (libegl1 and the GPU driver)"
)
VIDEO_EXTRA_HINT = f"install it with: {install_hint('video')}"
TENSORBOARD_MAX_SIDE = 160
"""TensorBoard clips are shrunk (every k-th pixel) to at most this many pixels a side ..."""
TENSORBOARD_MAX_FRAMES = 200
"""... and to at most this many frames (every k-th frame), so that an episode stays a few MB in memory."""

_PROBE = """
import mujoco
model = mujoco.MjModel.from_xml_string(
    '<mujoco><worldbody><light pos="0 0 2"/><geom type="box" size=".2 .2 .2"/></worldbody></mujoco>'
)
data = mujoco.MjData(model)
mujoco.mj_forward(model, data)
renderer = mujoco.Renderer(model, 16, 16)
renderer.update_scene(data)
assert renderer.render().any(), "the probe frame is black"
renderer.close()
"""
_PROBE_TIMEOUT_S = 120
_UNLIMITED_EPISODE_STEPS = 1000  # sizes the TensorBoard clip of a task without a time limit
_H264_CRF = 25  # imageio's default quality (5 of 10)
_MACRO_BLOCK = 16  # frame sizes are scaled up to whole H.264 macro blocks, as imageio does
_FFMPEG_LOG_LINES = 50  # the first lines of ffmpeg's error log are kept: they hold the cause
_OS_ERROR_TEXTS = frozenset(os.strerror(code) for code in errno.errorcode)

_selected_backend: str | None = None
_tensorboard_note_shown = False


class VideoError(AceRlError, RuntimeError):
    """A video cannot be made: no working OpenGL back-end, or the `video` extra is not installed."""


def _probe(backend: str) -> str | None:
    """None when MuJoCo renders a frame with ``backend`` (in a subprocess), else the reason in one line."""
    environment = {**os.environ, "MUJOCO_GL": backend}
    environment.setdefault("PYOPENGL_PLATFORM", backend)
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE], env=environment, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return f"no frame within {_PROBE_TIMEOUT_S} s"
    if result.returncode == 0:
        return None
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exit status {result.returncode}"
    return reason if len(reason) <= 200 else reason[:197] + "..."


def _user_backend() -> str | None:
    named = os.environ.get("MUJOCO_GL", "").strip()
    if named:
        return named
    platform = os.environ.get("PYOPENGL_PLATFORM", "").strip().lower()
    return platform if platform in GL_BACKENDS else None


def _platform_conflict() -> str | None:
    """Why ``PYOPENGL_PLATFORM`` keeps MuJoCo's EGL and OSMesa back-ends from loading, if it does: each refuses
    any other platform (with a message that names no value), so no back-end would work however it is installed."""
    platform = os.environ.get("PYOPENGL_PLATFORM", "").strip()
    named = os.environ.get("MUJOCO_GL", "").strip().lower()
    accepted = " or ".join(GL_BACKENDS)
    if not platform or (named and named not in GL_BACKENDS):  # no setting, or a back-end of the user's own
        return None
    if not named and platform not in GL_BACKENDS:  # PyOpenGL reads it case-sensitively
        return (
            f"PYOPENGL_PLATFORM={platform} is not an OpenGL platform for headless rendering (accepted: "
            f"{', '.join(GL_BACKENDS)}); set PYOPENGL_PLATFORM to {accepted}, or unset it to let ace-rl pick one "
            "that works"
        )
    if named and platform != named:
        return (
            f"MUJOCO_GL={named} and PYOPENGL_PLATFORM={platform} name different OpenGL back-ends; set both to the "
            f"same one ({accepted}), or unset PYOPENGL_PLATFORM"
        )
    return None


def select_gl_backend() -> str:
    """Choose the OpenGL back-end for MuJoCo rendering (see the module docstring) and return its name.

    Call it before the first MuJoCo-based environment of a rendering process is made: dm_control fixes its
    back-end when it is imported. Raises VideoError naming what to install (or to unset) where none works.
    """
    global _selected_backend
    if _selected_backend is not None:
        return _selected_backend
    conflict = _platform_conflict()
    if conflict is not None:
        raise VideoError(conflict)
    named = _user_backend()
    if named is not None:
        reason = _probe(named)
        if reason is not None:
            source = "MUJOCO_GL" if os.environ.get("MUJOCO_GL", "").strip() else "PYOPENGL_PLATFORM"
            raise VideoError(
                f"cannot render with the OpenGL back-end {source}={named} ({reason}); set MUJOCO_GL to "
                f"{' or '.join(GL_BACKENDS)}, or unset it to let ace-rl pick one that works"
            )
        backend = named
    else:
        failures = []
        for candidate in GL_BACKENDS:
            reason = _probe(candidate)
            if reason is None:
                break
            failures.append(f"{candidate}: {reason}")
        else:
            raise VideoError(f"no OpenGL back-end for headless rendering works ({'; '.join(failures)}); {INSTALL_HINT}")
        backend = candidate
    os.environ["MUJOCO_GL"] = backend
    dm_render = sys.modules.get("dm_control._render")
    if dm_render is not None and getattr(dm_render, "BACKEND", backend) != backend:
        raise VideoError(
            f"dm_control was imported with the OpenGL back-end {dm_render.BACKEND!r} before ace-rl chose {backend!r}; "
            f"set MUJOCO_GL={backend} before starting ace-rl"
        )
    _selected_backend = backend
    return backend


def needs_opengl(env_id: str) -> bool:
    """Whether rendering ``env_id`` goes through MuJoCo's OpenGL (every suite but Panda's PyBullet)."""
    return not panda.is_panda_id(env_id)


def check_video_support(env_id: str) -> None:
    """Raise VideoError unless videos of ``env_id`` can be written: imageio with ffmpeg, and (MuJoCo suites) a
    working OpenGL back-end, which this selects. Call before any environment of the process is made."""
    if missing_modules("imageio", "imageio_ffmpeg"):
        raise VideoError(f"videos need imageio with its ffmpeg plugin, which is not installed; {VIDEO_EXTRA_HINT}")
    if needs_opengl(env_id):
        select_gl_backend()


def make_render_env(
    env_id: str,
    reward: str = "dense",
    env_kwargs: Mapping[str, Any] | None = None,
    factory: EnvFactory | None = None,
    distractor_actions: int = 0,
) -> gym.Env:
    """`make_env` with ``render_mode="rgb_array"``, after choosing the OpenGL back-end where one is needed."""
    check_video_support(env_id)
    return make_env(
        env_id,
        reward=reward,
        render_mode="rgb_array",
        env_kwargs=env_kwargs,
        factory=factory,
        distractor_actions=distractor_actions,
    )


def frames_per_second(env: gym.Env) -> float:
    """The environment's real-time frame rate (one frame per step), 30 where it names none."""
    fps = env.metadata.get("render_fps")
    return float(fps) if fps else 30.0


class Mp4Writer:
    """Frames in, an MP4 file out (H.264 by the ffmpeg of imageio-ffmpeg); ffmpeg starts on the first frame.

    ffmpeg writes a temporary file beside ``path``, which `close` renames into place only once ffmpeg has
    finished without error: a failed write (a full disk, a read-only directory) leaves nothing under ``path``
    and no temporary file, and raises RunDirError naming the file and ffmpeg's reason. `discard` stops a
    recording that will not be finished.
    """

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps
        self.frames = 0
        self.temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
        self._ffmpeg: subprocess.Popen | None = None
        self._ffmpeg_log: list[str] = []
        self._log_reader: threading.Thread | None = None

    def append(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if self._ffmpeg is None:
            self._start(frame.shape[1], frame.shape[0])
        assert self._ffmpeg is not None and self._ffmpeg.stdin is not None
        try:
            self._ffmpeg.stdin.write(frame.data.cast("B"))
        except OSError:  # ffmpeg stopped (BrokenPipeError): its log says why
            self._fail(self._stop(kill=False))
        self.frames += 1

    def close(self) -> None:
        """Finish the file and move it into place (nothing happens when no frame was given)."""
        if self._ffmpeg is None:
            return
        code = self._stop(kill=False)
        if code != 0:
            self._fail(code)
        try:
            descriptor = os.open(self.temporary, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.replace(self.temporary, self.path)
        except OSError as error:
            self._remove_temporary()
            raise RunDirError(f"cannot write {self.path}: {error.strerror or error}") from None

    def discard(self) -> None:
        """Stop ffmpeg and remove what it wrote (a recording interrupted by an error)."""
        if self._ffmpeg is not None:
            self._stop(kill=True)
            self._remove_temporary()

    def _start(self, width: int, height: int) -> None:
        import imageio_ffmpeg

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.temporary, "wb"):  # ffmpeg's own reasons are vaguer than the OSError
                pass
        except FileExistsError:
            raise RunDirError(f"cannot write {self.path}: {self.path.parent} is not a directory") from None
        except OSError as error:
            raise RunDirError(f"cannot write {self.path}: {error.strerror or error}") from None
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-r", str(Fraction(self.fps).limit_denominator()), "-i", "-", "-an",
            "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", str(_H264_CRF),
        ]  # fmt: skip
        padded = (-(-width // _MACRO_BLOCK) * _MACRO_BLOCK, -(-height // _MACRO_BLOCK) * _MACRO_BLOCK)
        if padded != (width, height):  # H.264 players want sizes in whole macro blocks
            command += ["-vf", f"scale={padded[0]}:{padded[1]}"]
        command += ["-f", "mp4", str(self.temporary)]
        self._ffmpeg = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        # Read ffmpeg's log as it comes, so that a chatty ffmpeg never blocks on a full pipe.
        self._log_reader = threading.Thread(target=self._read_log, args=(self._ffmpeg.stderr,), daemon=True)
        self._log_reader.start()

    def _read_log(self, stream: Any) -> None:
        for line in stream:
            text = line.decode(errors="replace").strip()
            if text and len(self._ffmpeg_log) < _FFMPEG_LOG_LINES:
                self._ffmpeg_log.append(re.sub(r"^\[[^\]]*\]\s*", "", text))  # less "[out#0/mp4 @ 0x...]"

    def _stop(self, kill: bool) -> int:
        """End ffmpeg (closing its input lets it write the MP4 trailer) and return its exit status."""
        ffmpeg, self._ffmpeg = self._ffmpeg, None
        assert ffmpeg is not None and ffmpeg.stdin is not None  # started with stdin=PIPE
        if kill:
            ffmpeg.kill()
        try:
            ffmpeg.stdin.close()
        except OSError:
            pass  # ffmpeg already stopped
        code = ffmpeg.wait()
        if self._log_reader is not None:
            self._log_reader.join()
        return code

    def _fail(self, code: int) -> None:
        self._remove_temporary()
        raise RunDirError(f"cannot write {self.path}: {self._reason(code)}")

    def _reason(self, code: int) -> str:
        """The OS error in ffmpeg's log ("Error writing trailer: No space left on device") when there is one:
        ffmpeg's last words can be a consequence ("Nothing was written into output file ...")."""
        for line in self._ffmpeg_log:
            cause = next((text for text in _OS_ERROR_TEXTS if line.endswith(": " + text)), None)
            if cause is not None:
                return f"{cause} (ffmpeg: {line.removesuffix(': ' + cause)})"
        return f"ffmpeg: {self._ffmpeg_log[-1]}" if self._ffmpeg_log else f"ffmpeg stopped with exit status {code}"

    def _remove_temporary(self) -> None:
        try:
            self.temporary.unlink(missing_ok=True)
        except OSError:
            pass  # a directory that cannot be listed holds no temporary of ours


class FrameRecorder(gym.Wrapper):
    """Hands ``env.render()`` to ``on_frame`` after every episode's reset and every step: each episode shows its
    start state, then one frame per action. A reset with a seed (`seed_env`'s) only seeds, and shows nothing:
    the episodes that follow begin with their own resets."""

    def __init__(self, env: gym.Env, on_frame: Callable[[np.ndarray], None]) -> None:
        super().__init__(env)
        self.on_frame = on_frame

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        result = self.env.reset(seed=seed, options=options)
        if seed is None:
            self._capture()
        return result

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        result = self.env.step(action)
        self._capture()
        return result

    def _capture(self) -> None:
        frame = self.env.render()
        if frame is None:
            raise VideoError(f"{self.env.unwrapped} rendered no frame (render_mode {self.env.render_mode!r})")
        self.on_frame(np.asarray(frame))


def record_episodes(
    policy: ActionFunction, env_id: str, reward: str, seed: int, episodes: int, path: Path, fps: float | None = None
) -> Path:
    """Run ``policy`` for ``episodes`` episodes on a fresh environment seeded with ``seed`` and write them, one
    after the other, to the MP4 file ``path`` (at the environment's real-time rate unless ``fps`` is given)."""
    env = make_render_env(env_id, reward)
    try:
        with recording(env, path, fps) as recorded:
            seed_env(env, seed)
            run_episodes(policy, recorded, episodes)
    finally:
        env.close()
    return path


@contextmanager
def recording(env: gym.Env, path: Path, fps: float | None = None) -> Iterator[gym.Env]:
    """``env`` (made with ``render_mode="rgb_array"``) wrapped so that the episodes played on it go, one after the
    other, to the MP4 file ``path`` (at the environment's real-time rate unless ``fps`` is given). The file is
    written when the block ends; a block that raises leaves none. ``env`` stays open."""
    writer = Mp4Writer(path, fps or frames_per_second(env))
    try:
        yield FrameRecorder(env, writer.append)
    except BaseException:
        writer.discard()
        raise
    writer.close()


@dataclass(frozen=True)
class VideoClip:
    """One recorded episode: the MP4 file, and the (shrunk) frames given to TensorBoard."""

    path: Path
    env_step: int
    frames: int
    episode_return: float
    tensorboard_frames: np.ndarray
    """(T, H, W, 3) uint8: every k-th frame, every k-th pixel (see TENSORBOARD_MAX_*)."""
    tensorboard_fps: float


class TensorBoardFrames:
    """Keeps every k-th frame, every k-th pixel of an episode of at most ``max_steps`` steps, within
    TENSORBOARD_MAX_FRAMES and TENSORBOARD_MAX_SIDE, as the frames arrive (whole frames are never held)."""

    def __init__(self, max_steps: int, fps: float) -> None:
        self.frame_stride = -(-(max_steps + 1) // TENSORBOARD_MAX_FRAMES)
        self.fps = fps / self.frame_stride
        self._seen = 0
        self._kept: list[np.ndarray] = []

    def append(self, frame: np.ndarray) -> None:
        if self._seen % self.frame_stride == 0:
            pixel_stride = -(-max(frame.shape[:2]) // TENSORBOARD_MAX_SIDE)
            self._kept.append(np.array(frame[::pixel_stride, ::pixel_stride], dtype=np.uint8))
        self._seen += 1

    def clip(self) -> np.ndarray:
        return np.stack(self._kept) if self._kept else np.zeros((0, 1, 1, 3), dtype=np.uint8)


def tensorboard_video_available() -> bool:
    """Whether `SummaryWriter.add_video` can encode (it needs moviepy's `moviepy.editor`, gone in moviepy 2)."""
    try:
        import moviepy.editor  # noqa: F401
    except (ImportError, OSError, RuntimeError):
        # ImportError: no moviepy, or moviepy 2 (no moviepy.editor). A moviepy 1 whose ffmpeg or ImageMagick
        # binary is set but unusable raises OSError from its config, and imageio's ffmpeg lookup RuntimeError.
        return False
    return True


def add_tensorboard_video(writer: Any, tag: str, clip: VideoClip) -> bool:
    """Add ``clip`` to a TensorBoard ``SummaryWriter``; without moviepy say so once on stderr and return False."""
    global _tensorboard_note_shown
    if not tensorboard_video_available():
        if not _tensorboard_note_shown:
            print(
                f"ace-rl: note: TensorBoard videos need moviepy<2 ({install_hint('video')}); "
                "the MP4 files in RUN/videos are written regardless",
                file=sys.stderr,
            )
            _tensorboard_note_shown = True
        return False
    video = clip.tensorboard_frames.transpose(0, 3, 1, 2)[np.newaxis]  # (N, T, C, H, W)
    writer.add_video(tag, video, global_step=clip.env_step, fps=max(1, round(clip.tensorboard_fps)))
    return True


class TrainingVideo:
    """``--video-every N``: one deterministic evaluation episode, recorded on an environment of its own.

    Every recording starts from the same state (the environment is reseeded with ``seed`` each time), so
    videos from different points of training show the same task; the environment's random streams are its
    own, so recording changes nothing in training and needs nothing in checkpoints.
    Construct it before the run's other environments (it chooses the OpenGL back-end).
    """

    def __init__(
        self,
        run_dir: Path,
        env_id: str,
        reward: str,
        seed: int,
        env_kwargs: Mapping[str, Any] | None = None,
        factory: EnvFactory | None = None,
        distractor_actions: int = 0,
    ) -> None:
        self.run_dir = RunDir(run_dir)
        self.seed = seed
        self.env = make_render_env(env_id, reward, env_kwargs, factory, distractor_actions)
        self.fps = frames_per_second(self.env)

    def record(self, policy: ActionFunction, env_step: int, tensorboard: Any = None) -> VideoClip:
        """Record one episode of ``policy`` into ``RUN/videos/step-XXXXXXXX.mp4``; with a SummaryWriter, also
        into TensorBoard under ``eval/video`` at ``env_step``."""
        path = self.run_dir.training_video(env_step)
        writer = Mp4Writer(path, self.fps)
        small = TensorBoardFrames(episode_steps(self.env) or _UNLIMITED_EPISODE_STEPS, self.fps)

        def keep(frame: np.ndarray) -> None:
            writer.append(frame)
            small.append(frame)

        seed_env(self.env, self.seed)
        try:
            episodes = run_episodes(policy, FrameRecorder(self.env, keep), 1)
        except BaseException:
            writer.discard()
            raise
        writer.close()
        clip = VideoClip(path, env_step, writer.frames, float(episodes.returns[0]), small.clip(), small.fps)
        if tensorboard is not None:
            add_tensorboard_video(tensorboard, "eval/video", clip)
        return clip

    def close(self) -> None:
        self.env.close()
