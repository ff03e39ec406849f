"""A run directory under faults: a second process, a full disk, a read-only file system, bad paths, refused
and interrupted starts, malformed files, stale temporary files and corrupt checkpoints.

Each fault is made for real: a second real process, a real tmpfs filled to the last byte, a real read-only
mount (the mount tests need root, as CI has, and are skipped otherwise).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from ace_rl.ace import ACE
from ace_rl.checkpoint import load_training_state
from ace_rl.config import preset_config
from ace_rl.evaluation import EVAL_MAX_EPISODE_STEPS, run_episodes
from ace_rl.logger import CsvTable
from ace_rl.replay import Batch
from ace_rl.rundir import RunDir, RunDirError, RunLock, is_locked
from ace_rl.trainer import NonFiniteError, Trainer, create_run_dir, run_training

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
    "--causal-interval",
    "200",
    "--causal-samples",
    "150",
    "--eval-every",
    "200",
    "--eval-episodes",
    "1",
    "--buffer-size",
    "5000",
    "--threads",
    "1",
    "--no-progress",
]


def ace_rl(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ace_rl.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def run(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    return finish(ace_rl(*args, cwd=cwd))


# What a run says at its start on stderr before any fault (ace_rl.causal_cost.causal_method_line): not an error.
START_NOTICES = ("ace-rl: causal method ", "ace-rl: causal target ")


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(START_NOTICES)]
    assert len(lines) == 1 and lines[0].startswith("ace-rl: error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def wait_for(predicate, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def assert_whole_rows(run_dir: Path) -> None:
    """Every CSV parses with every field of its header on every row (no half-written row)."""
    for name in ("metrics.csv", "episodes.csv", "causal_weights.csv", "resets.csv"):
        with open(run_dir / name, newline="") as file:
            table = list(csv.reader(file))
        assert table, name
        assert all(len(row) == len(table[0]) for row in table), name


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file's mtime and size, but the lock's (whose holder may note its pid in it)."""
    return {
        str(path.relative_to(directory)): (path.stat().st_mtime_ns, path.stat().st_size)
        for path in directory.rglob("*")
        if path.is_file() and path.name != ".lock"
    }


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real, small file system of its own (root only)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# --------------------------------------------------------------------------------------------------
# One process per run directory
# --------------------------------------------------------------------------------------------------
def test_second_process_on_a_run_directory_is_refused_and_writes_nothing(tmp_path: Path):
    run_dir = tmp_path / "run"
    first = ace_rl("train", *TINY, "--total-steps", "20000", "--run-dir", str(run_dir))
    try:
        wait_for(lambda: (run_dir / "episodes.csv").is_file(), what="the first run to start")
        config_before = (run_dir / "config.json").read_bytes()
        code, _, stderr = run("train", "--resume", str(run_dir), "--no-progress")
        assert code != 0
        assert_one_line_error(stderr, str(run_dir), f"pid {first.pid}")
        assert (run_dir / "config.json").read_bytes() == config_before
        # A fresh run aimed at the same directory is refused the same way.
        code, _, stderr = run("train", *TINY, "--total-steps", "300", "--run-dir", str(run_dir))
        assert code != 0
        assert_one_line_error(stderr, str(run_dir), f"pid {first.pid}")
        assert is_locked(run_dir)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The kernel released the killed holder's lock: the directory is usable at once.
    assert not is_locked(run_dir)
    with RunLock(run_dir):
        assert is_locked(run_dir)


def test_two_identical_fresh_runs_started_together_never_share_a_directory(tmp_path: Path):
    run_dir = tmp_path / "same"
    processes = [ace_rl("train", *TINY, "--total-steps", "250", "--run-dir", str(run_dir)) for _ in range(2)]
    results = [finish(process) for process in processes]
    codes = sorted(code for code, _, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    refused = next(stderr for code, _, stderr in results if code != 0)
    assert_one_line_error(refused, str(run_dir))
    assert [int(row["env_step"]) for row in rows(run_dir / "metrics.csv")] == [200, 250]


def test_default_run_directory_names_never_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    config = preset_config("small", env="Hopper-v5", seed=1)
    directories = [create_run_dir(None, config) for _ in range(3)]  # the same second, the same command
    assert len(set(directories)) == 3
    assert all(directory.is_dir() and directory.parent == Path("runs") for directory in directories)
    # Identical commands in two processes, started together, into the default location.
    processes = [ace_rl("train", *TINY, "--total-steps", "150", cwd=tmp_path) for _ in range(2)]
    results = [finish(process) for process in processes]
    assert all(code == 0 for code, _, _ in results), results
    written = {line.removeprefix("run written to ") for _, stdout, _ in results for line in stdout.splitlines()}
    assert len(written) == 2


# --------------------------------------------------------------------------------------------------
# The file system fails
# --------------------------------------------------------------------------------------------------
def fill_to_last_byte(disk: Path) -> None:
    """Fill a (tmpfs) file system: large blocks while they fit, then smaller ones, until a byte no longer fits."""
    with open(disk / "filler", "ab", buffering=0) as filler:
        for block in (65536, 4096, 1):
            try:
                while True:
                    filler.write(b"\0" * block)
            except OSError:
                pass


def test_disk_full_mid_run_gives_one_line_keeps_the_checkpoint_and_resume_works_once_space_is_free(tmp_path: Path):
    with tmpfs(tmp_path / "disk", "3m") as disk:
        run_dir = disk / "run"
        process = ace_rl("train", *TINY, "--total-steps", "800", "--checkpoint-every", "150", "--run-dir", str(run_dir))
        wait_for(lambda: any((run_dir / "checkpoints").glob("*.sha256")), what="a first checkpoint")
        fill_to_last_byte(disk)
        code, _, stderr = finish(process)
        assert code == 1
        assert_one_line_error(stderr, "No space left on device", str(run_dir))
        assert not list(run_dir.rglob("*.tmp"))
        state, _path, skipped = load_training_state(run_dir)
        assert skipped == [] and state["env_step"] >= 150
        assert_whole_rows(run_dir)

        (disk / "filler").unlink()
        code, _stdout, stderr = run("train", "--resume", str(run_dir), "--no-progress")
        assert code == 0, stderr
        assert [int(row["env_step"]) for row in rows(run_dir / "metrics.csv")] == [200, 400, 600, 800]
        assert_whole_rows(run_dir)


def test_csv_row_that_does_not_fit_is_cut_back_whole(tmp_path: Path):
    with tmpfs(tmp_path / "disk", "64k") as disk:
        table = CsvTable(disk / "metrics.csv", ["env_step", "note"])
        table.write(env_step=1, note="fits")
        with open(disk / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 1024)
                    filler.flush()
            except OSError:
                pass
        with pytest.raises(RunDirError, match=re.escape("metrics.csv: No space left on device")):
            table.write(env_step=2, note="x" * 20_000)
        table.close()
        assert (disk / "metrics.csv").read_bytes() == b"env_step,note\r\n1,fits\r\n"


def test_read_only_file_system_is_refused_in_one_line_before_training(tmp_path: Path):
    with tmpfs(tmp_path / "ro", "4m") as disk:
        done = disk / "done"
        code, _, stderr = run("train", *TINY, "--total-steps", "150", "--run-dir", str(done))
        assert code == 0, stderr
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        before = snapshot(done)
        code, _, stderr = run("train", *TINY, "--total-steps", "150", "--run-dir", str(disk / "new"))
        assert code != 0
        assert_one_line_error(stderr, str(disk / "new"), "Read-only file system")
        code, _, stderr = run("train", "--resume", str(done), "--total-steps", "300", "--no-progress")
        assert code != 0
        assert_one_line_error(stderr, str(done), "Read-only file system")
        assert snapshot(done) == before


def test_run_dir_under_a_file_or_where_nothing_can_be_created_is_one_line(tmp_path: Path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for run_dir, cause in ((a_file / "run", "Not a directory"), (a_file, "is a file"), (Path("/proc/ace-rl/run"), "")):
        code, _, stderr = run("train", *TINY, "--total-steps", "150", "--run-dir", str(run_dir))
        assert code != 0
        assert_one_line_error(stderr, str(run_dir), cause)


# --------------------------------------------------------------------------------------------------
# Refused and interrupted starts
# --------------------------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_refused_settings_write_nothing(tmp_path: Path):
    for option, value, fragment in (("--device", "cuda", "CUDA is not available"), ("--seed", "-1", "--seed")):
        run_dir = tmp_path / option.strip("-")
        code, _, stderr = run("train", *TINY, "--total-steps", "150", option, value, "--run-dir", str(run_dir))
        assert code == 2
        assert_one_line_error(stderr, fragment)
        assert not run_dir.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_refused_resume_does_not_rewrite_config(tmp_path: Path):
    run_dir = tmp_path / "run"
    code, _, stderr = run("train", *TINY, "--total-steps", "150", "--run-dir", str(run_dir))
    assert code == 0, stderr
    before = snapshot(run_dir)
    code, _, stderr = run(
        "train", "--resume", str(run_dir), "--total-steps", "300", "--device", "cuda", "--no-progress"
    )
    assert code == 2
    assert_one_line_error(stderr, "CUDA is not available")
    assert snapshot(run_dir) == before
    assert json.loads((run_dir / "config.json").read_text())["device"] == "auto"


def test_run_killed_before_its_first_checkpoint_resumes_from_zero_as_a_fresh_run(tmp_path: Path):
    settings = [*TINY, "--total-steps", "400", "--checkpoint-every", "100000"]
    killed = tmp_path / "killed"
    process = ace_rl("train", *settings, "--run-dir", str(killed))
    wait_for(lambda: (killed / "config.json").is_file(), what="config.json")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not list((killed / "checkpoints").glob("state-*.pt")) if (killed / "checkpoints").exists() else True
    # The directory is a run, so a fresh start there is refused with advice that works.
    code, _, stderr = run("train", *settings, "--run-dir", str(killed))
    assert code == 2
    assert_one_line_error(stderr, f"--resume {killed}")
    code, _, stderr = run("train", "--resume", str(killed), "--no-progress")
    assert code == 0, stderr
    assert "starting it again from env step 0" in stderr

    fresh = tmp_path / "fresh"
    code, _, stderr = run("train", *settings, "--run-dir", str(fresh))
    assert code == 0, stderr
    for name, columns in (("episodes.csv", ["env_step", "return"]), ("metrics.csv", ["env_step", "eval_return_mean"])):
        assert [[row[c] for c in columns] for row in rows(killed / name)] == [
            [row[c] for c in columns] for row in rows(fresh / name)
        ], name


# --------------------------------------------------------------------------------------------------
# Malformed files
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("small") / "run"
    code, _, stderr = run(
        "train", *TINY, "--total-steps", "300", "--checkpoint-every", "100", "--run-dir", str(run_dir)
    )
    assert code == 0, stderr
    return run_dir


def test_garbage_policy_checkpoint_is_one_line_without_unsafe_advice(small_run: Path, tmp_path: Path):
    run_dir = tmp_path / "garbage"
    shutil.copytree(small_run, run_dir)
    best = run_dir / "checkpoints" / "best.pt"
    best.write_bytes(os.urandom(4096))
    code, _, stderr = run("eval", str(run_dir), "--episodes", "1")
    assert code == 2
    assert_one_line_error(stderr, str(best), "not a readable ace-rl policy checkpoint")
    assert "weights_only" not in stderr
    torch.save({"something": torch.zeros(2)}, best)  # a readable file, but not a policy
    code, _, stderr = run("eval", str(run_dir), "--episodes", "1")
    assert code == 2
    assert_one_line_error(stderr, "'obs_dim'")


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("[1, 2, 3]", "not a JSON object"),
        ('{"env": "Hopper-v5"}', "lacks the settings"),
        ("{not json", "not readable JSON"),
    ],
)
def test_malformed_config_is_one_line(small_run: Path, tmp_path: Path, content: str, fragment: str):
    run_dir = tmp_path / "bad"
    shutil.copytree(small_run, run_dir)
    (run_dir / "config.json").write_text(content)
    code, _, stderr = run("train", "--resume", str(run_dir), "--total-steps", "400", "--no-progress")
    assert code == 2
    assert_one_line_error(stderr, fragment)


def test_config_that_differs_from_the_checkpoints_own_is_refused(small_run: Path, tmp_path: Path):
    run_dir = tmp_path / "edited"
    shutil.copytree(small_run, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["gamma"] = 0.9
    (run_dir / "config.json").write_text(json.dumps(config))
    before = snapshot(run_dir)
    code, _, stderr = run("train", "--resume", str(run_dir), "--total-steps", "400", "--no-progress")
    assert code == 2
    assert_one_line_error(stderr, "gamma", "0.9", "0.99")
    assert snapshot(run_dir) == before


def test_resume_removes_stale_temporaries_and_never_keeps_a_corrupt_checkpoint(small_run: Path, tmp_path: Path):
    run_dir = tmp_path / "corrupt"
    shutil.copytree(small_run, run_dir)
    layout = RunDir(run_dir)
    states = layout.states()
    assert len(states) == 3
    newest = states[-1]
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated: its digest no longer matches
    stale = [layout.checkpoints / "state-0000009999.pt.tmp", run_dir / "metrics.csv.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    code, _, stderr = run("train", "--resume", str(run_dir), "--total-steps", "700", "--no-progress")
    assert code == 0, stderr
    assert f"skipped checkpoint {newest.name}" in stderr
    assert not any(path.exists() for path in stale)
    kept = layout.states()
    assert len(kept) == 3
    for path in kept:  # every kept checkpoint is intact: the corrupt one never took an intact one's place
        digest = (path.with_name(path.name + ".sha256")).read_text().strip()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


# --------------------------------------------------------------------------------------------------
# Smaller defects
# --------------------------------------------------------------------------------------------------
class NeverEnding(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self) -> None:
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.steps += 1
        return np.zeros(2, np.float32), 1.0, False, False, {}


def test_evaluation_episodes_are_capped():
    env = NeverEnding()
    episodes = run_episodes(lambda obs: np.zeros(1, np.float32), env, 2)
    assert env.steps == 2 * EVAL_MAX_EPISODE_STEPS
    assert list(episodes.returns) == [EVAL_MAX_EPISODE_STEPS] * 2
    if "AceRlNeverEnding-v0" not in gym.registry:
        gym.register("AceRlNeverEnding-v0", entry_point=NeverEnding, max_episode_steps=37)
    limited = gym.make("AceRlNeverEnding-v0")
    episodes = run_episodes(lambda obs: np.zeros(1, np.float32), limited, 3)
    assert list(episodes.returns) == [37.0] * 3


def test_non_finite_parameter_writes_no_final_policy(tmp_path: Path):
    config = preset_config(
        "small",
        env="InvertedPendulum-v5",
        total_steps=100,
        start_steps=50,
        batch_size=32,
        hidden_size=32,
        eval_every=100,
        eval_episodes=1,
        threads=1,
        progress=False,
        run_dir=tmp_path,
    )
    trainer = Trainer(config, tmp_path)
    try:
        with torch.no_grad():
            trainer.agent.actor.mean.weight[0, 0] = float("nan")
        with pytest.raises(NonFiniteError, match=re.escape("actor.mean.weight")):
            trainer.finish()
        assert not (tmp_path / "checkpoints" / "final.pt").exists()
        assert not list((tmp_path / "checkpoints").glob("state-*"))
    finally:
        trainer.close()


def test_actor_gradients_survive_a_checkpoint_so_a_reset_on_a_critic_only_update_still_happens():
    """Resume lands just before update 7, a reset (interval 7) that is not an actor update (frequency 2)."""
    config = preset_config("small", hidden_size=16, batch_size=8, reset_interval=7, reset_start=0, policy_frequency=2)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)

    def batch() -> Batch:
        return Batch(
            torch.randn(8, 3, generator=generator),
            torch.rand(8, 2, generator=generator) * 2 - 1,
            torch.randn(8, generator=generator),
            torch.randn(8, 3, generator=generator),
            torch.zeros(8),
        )

    low, high = -np.ones(2, np.float32), np.ones(2, np.float32)
    uninterrupted = ACE(3, 2, low, high, config, torch.device("cpu"))
    for _ in range(6):
        uninterrupted.update(batch())
    resumed = ACE(3, 2, low, high, config, torch.device("cpu"))
    state = uninterrupted.state_dict()
    buffer = __import__("io").BytesIO()
    torch.save(state, buffer)  # through the same serialisation as a checkpoint
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))

    last = batch()
    rng = torch.get_rng_state()
    uninterrupted.update(last)
    reset_uninterrupted = uninterrupted.last_reset
    torch.set_rng_state(rng)
    resumed.update(last)
    reset_resumed = resumed.last_reset
    assert reset_uninterrupted is not None and reset_uninterrupted.update == 7
    assert reset_resumed == reset_uninterrupted
    for a, b in zip(uninterrupted.actor.parameters(), resumed.actor.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(uninterrupted.critic.parameters(), resumed.critic.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("reset_interval, policy_frequency", [(7, 2), (5, 3)])
def test_resume_at_an_episode_end_is_exact_for_any_reset_interval_and_policy_frequency(
    tmp_path: Path, reset_interval: int, policy_frequency: int
):
    batch_size, total = 32, 900
    settings = dict(
        env="InvertedPendulum-v5",
        start_steps=100,
        batch_size=batch_size,
        hidden_size=32,
        causal_interval=200,
        causal_samples=150,
        eval_every=300,
        eval_episodes=1,
        buffer_size=5000,
        threads=1,
        progress=False,
        reset_interval=reset_interval,
        reset_start=0,
        policy_frequency=policy_frequency,
        checkpoint_every=100_000,
    )
    reference = run_training(preset_config("small", total_steps=total, run_dir=tmp_path / "reference", **settings))
    # An episode end after which the very next update is a reset that is not an actor update.
    candidates = []
    for row in rows(reference / "episodes.csv"):
        env_step = int(row["env_step"])
        next_update = env_step - batch_size + 2
        if (
            policy_frequency < next_update  # updates started, and the actor has gradients to measure
            and env_step < total - 100
            and next_update % reset_interval == 0
            and next_update % policy_frequency != 0
        ):
            candidates.append(env_step)
    assert candidates, "no episode end lies just before a critic-only reset; choose other sizes"
    stop = candidates[0]
    interrupted = run_training(preset_config("small", total_steps=stop, run_dir=tmp_path / "interrupted", **settings))
    state, _, _ = load_training_state(interrupted)
    assert state["env_step"] == stop and state["mid_episode"] is False
    code, _, stderr = run("train", "--resume", str(interrupted), "--total-steps", str(total), "--no-progress")
    assert code == 0, stderr
    for name in ("episodes.csv", "resets.csv", "causal_weights.csv"):
        compared = [
            {key: value for key, value in row.items() if key not in ("wall_time", "seconds")}
            for row in rows(interrupted / name)
        ]
        expected = [
            {key: value for key, value in row.items() if key not in ("wall_time", "seconds")}
            for row in rows(reference / name)
        ]
        assert compared == expected, name
    assert any(int(row["update"]) == stop - batch_size + 2 for row in rows(reference / "resets.csv"))
