"""Every run can be finished, and a refused command changes nothing.

- A run killed after its last checkpoint, before or while it writes final.pt, is not done (ace_rl.runstate, which
  sweeps ask) and `ace-rl train --resume` finishes it: final.pt of its total, at most three checkpoints.
- A refused `--resume` (a run trained on a lambda, whose environment cannot be rebuilt) writes no file.
- An agent whose state torch.load(weights_only=True) would refuse is stopped at its first checkpoint, in one line
  naming the entry, not at `--resume`.

The kills are real SIGKILLs, at points no timing could reach: the trainer's test hook ACE_RL_TEST_SIGKILL_AT
(ace_rl.trainer._test_kill_point) makes the process kill itself there.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter, OrderedDict, defaultdict
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import ace_rl
from ace_rl.checkpoint import KEEP_STATES, unloadable_entry
from ace_rl.cli import main
from ace_rl.envs import EnvError
from ace_rl.runstate import RunPhase, reached_total_steps, run_state

TESTS = Path(__file__).parent
TOTAL = 300
TINY = [
    "--env",
    "InvertedPendulum-v5",
    "--seed",
    "0",
    "--preset",
    "small",
    "--total-steps",
    str(TOTAL),
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
    "--checkpoint-every",
    "100",
    "--threads",
    "1",
    "--no-progress",
]


def ace_rl_command(*args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    environment = dict(os.environ)
    environment.pop("ACE_RL_TEST_SIGKILL_AT", None)
    if kill_at is not None:
        environment["ACE_RL_TEST_SIGKILL_AT"] = kill_at
    # tests/ on the path: the agent plugins below are imported by name (--algo module:name).
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), environment.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "ace_rl.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
    )


def state_steps(run_dir: Path) -> list[int]:
    """The env steps of the full-state checkpoints, read from the file names."""
    return sorted(int(path.name[len("state-") : -len(".pt")]) for path in (run_dir / "checkpoints").glob("state-*.pt"))


def final_step(run_dir: Path) -> int:
    return int(torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)["env_step"])


def final_actor(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)["actor"]


def episodes(run_dir: Path) -> list[tuple[str, ...]]:
    """episodes.csv without its wall times, which differ between processes."""
    with open(run_dir / "episodes.csv", newline="") as file:
        return [tuple(value for name, value in row.items() if name != "wall_time") for row in csv.DictReader(file)]


def snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    """Every file's mtime and contents, but the lock's (whose holder notes its pid in it)."""
    return {
        str(path.relative_to(directory)): (path.stat().st_mtime_ns, path.read_bytes())
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


def assert_one_error_line(stderr: str, *fragments: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("ace-rl: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def assert_finished(run_dir: Path, total: int) -> None:
    assert final_step(run_dir) == total
    steps = state_steps(run_dir)
    assert len(steps) <= KEEP_STATES and steps[-1] == total, steps
    assert run_state(run_dir).phase is RunPhase.DONE
    assert run_state(run_dir, total).phase is RunPhase.DONE


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run the others are stopped copies of, trained to its end in one process."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    done = ace_rl_command("train", *TINY, "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert final_step(run_dir) == TOTAL and state_steps(run_dir)[-1] == TOTAL
    return run_dir


# ----------------------------------------------------------------------------------------------------------------
# A run stopped after its last checkpoint is finished by --resume
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kill_at", ["final", "last-state"])
def test_a_run_killed_after_its_last_checkpoint_is_not_done_and_resume_finishes_it(
    tmp_path: Path, uninterrupted: Path, kill_at: str
):
    run_dir = tmp_path / "run"
    killed = ace_rl_command("train", *TINY, "--run-dir", str(run_dir), kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (run_dir / "checkpoints" / "final.pt").exists() == (kill_at == "last-state")
    assert max(state_steps(run_dir)) < TOTAL
    # What a sweep asks of it, with its own total and with the run's: not done, to be resumed.
    for total in (None, TOTAL):
        assert run_state(run_dir, total).phase is RunPhase.RESUMABLE
        assert not reached_total_steps(run_dir, total)

    resumed = ace_rl_command("train", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert_finished(run_dir, TOTAL)
    # Resumed from an episode boundary, it ends as the run that was never stopped.
    assert episodes(run_dir) == episodes(uninterrupted)
    expected = final_actor(uninterrupted)
    assert all(torch.equal(weights, expected[name]) for name, weights in final_actor(run_dir).items())


def test_a_run_left_at_its_total_without_final_pt_is_finished_without_training(tmp_path: Path, uninterrupted: Path):
    # What ace-rl before this change left when killed between its checkpoint at the total and final.pt.
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, run_dir)
    (run_dir / "checkpoints" / "final.pt").unlink()
    assert run_state(run_dir).phase is RunPhase.RESUMABLE
    assert run_state(run_dir, TOTAL).phase is RunPhase.RESUMABLE
    before = snapshot(run_dir)
    shorter = ace_rl_command("train", "--resume", str(run_dir), "--total-steps", str(TOTAL - 100))
    assert shorter.returncode == 2
    assert_one_error_line(shorter.stderr, f"already reached {TOTAL} env steps", f"pass --total-steps {TOTAL} to finish")
    assert snapshot(run_dir) == before

    resumed = ace_rl_command("train", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert "finishing it" in resumed.stderr
    assert_finished(run_dir, TOTAL)
    assert episodes(run_dir) == episodes(uninterrupted)  # no step was taken again
    expected = final_actor(uninterrupted)
    assert all(torch.equal(weights, expected[name]) for name, weights in final_actor(run_dir).items())


def test_resuming_a_finished_run_asks_for_a_larger_total_and_changes_nothing(tmp_path: Path, uninterrupted: Path):
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, run_dir)
    before = snapshot(run_dir)
    refused = ace_rl_command("train", "--resume", str(run_dir))
    assert refused.returncode == 2
    assert_one_error_line(refused.stderr, f"already reached {TOTAL} env steps", "pass a larger --total-steps")
    assert snapshot(run_dir) == before


def test_an_extension_killed_before_its_final_pt_is_not_done_and_resume_finishes_it(
    tmp_path: Path, uninterrupted: Path
):
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, run_dir)
    longer = TOTAL + 100
    killed = ace_rl_command("train", "--resume", str(run_dir), "--total-steps", str(longer), kill_at="final")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert final_step(run_dir) == TOTAL  # the shorter run's final.pt, still there
    # config.json now holds the longer total: the run is done for the shorter one only.
    assert run_state(run_dir).phase is RunPhase.RESUMABLE
    assert run_state(run_dir, longer).phase is RunPhase.RESUMABLE
    assert run_state(run_dir, TOTAL).phase is RunPhase.DONE

    resumed = ace_rl_command("train", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert_finished(run_dir, longer)


# ----------------------------------------------------------------------------------------------------------------
# A refused --resume changes no file
# ----------------------------------------------------------------------------------------------------------------
def pendulum() -> gym.Env:
    return gym.make("InvertedPendulum-v5")


@pytest.fixture(scope="module")
def lambda_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained on a lambda: its environment cannot be rebuilt by name."""
    run_dir = tmp_path_factory.mktemp("lambda") / "run"
    ace_rl.train(
        env=lambda: pendulum(),
        preset="small",
        run_dir=run_dir,
        total_steps=200,
        start_steps=100,
        batch_size=32,
        hidden_size=32,
        eval_every=100,
        eval_episodes=1,
        checkpoint_every=100,
        threads=1,
        progress=False,
    )
    return run_dir


def test_a_refused_resume_changes_no_file(tmp_path: Path, lambda_run: Path, capsys: pytest.CaptureFixture[str]):
    run_dir = tmp_path / "run"
    shutil.copytree(lambda_run, run_dir)
    before = snapshot(run_dir)
    for _ in range(2):
        with pytest.raises(EnvError, match="comes from a factory that cannot be imported"):
            ace_rl.resume(run_dir, total_steps=400)
        with pytest.raises(SystemExit) as exit_status:
            main(["train", "--resume", str(run_dir), "--total-steps", "400"])
        assert exit_status.value.code == 2
        assert_one_error_line(capsys.readouterr().err, "comes from a factory that cannot be imported")
    assert snapshot(run_dir) == before


def test_a_refused_restart_changes_no_file(tmp_path: Path, lambda_run: Path, capsys: pytest.CaptureFixture[str]):
    # A run stopped before its first checkpoint: its config.json, an episode's row, a half-written file.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(lambda_run / "config.json", run_dir)
    lines = (lambda_run / "episodes.csv").read_text().splitlines(keepends=True)
    (run_dir / "episodes.csv").write_text("".join(lines[:2]))
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "best.pt.tmp").write_bytes(b"half a file")
    before = snapshot(run_dir)
    with pytest.raises(EnvError, match="comes from a factory that cannot be imported"):
        ace_rl.resume(run_dir, total_steps=400)
    with pytest.raises(SystemExit) as exit_status:
        main(["train", "--resume", str(run_dir)])
    assert exit_status.value.code == 2
    assert_one_error_line(capsys.readouterr().err, "comes from a factory that cannot be imported")
    assert snapshot(run_dir) == before


# ----------------------------------------------------------------------------------------------------------------
# An agent state that could not be loaded is refused when it is saved
# ----------------------------------------------------------------------------------------------------------------
def loads_with_weights_only(value: object, tmp_path: Path) -> bool:
    """Whether ``value`` comes back from torch.save and torch.load(weights_only=True), as --resume reads it."""
    path = tmp_path / "value.pt"
    torch.save({"value": value}, path)
    try:
        torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 - refused, whichever way
        return False
    return True


@pytest.mark.parametrize(
    "value",
    [
        torch.zeros(2),
        nn.Parameter(torch.ones(2)),
        [1, 2.5, "a", None, True, b"x", bytearray(b"y"), 1 + 2j],
        (1, (2, 3)),
        {1, 2},
        OrderedDict(a=1),
        Counter("aab"),
        {"a": {3: [torch.ones(1), torch.Size([2, 3]), torch.device("cpu"), torch.float16]}},
        np.zeros(3),
        {"a": [np.float64(1.0)]},
        np.int64(1),
        {np.int64(1): 2},
        defaultdict(list),
        frozenset({1}),
        Path("x"),
        {"deep": {"er": [1, {"counts": np.ones(2)}]}},
    ],
    ids=repr,
)
def test_the_checkpoint_check_refuses_what_torch_load_refuses(value: object, tmp_path: Path):
    assert (unloadable_entry({"value": value}, "state") is None) == loads_with_weights_only(value, tmp_path)


def test_a_real_checkpoint_passes_the_check(uninterrupted: Path):
    [latest] = [path for path in (uninterrupted / "checkpoints").glob("state-*.pt") if str(TOTAL) in path.name]
    assert unloadable_entry(torch.load(latest, weights_only=True), "state") is None


def test_an_agent_state_holding_a_numpy_array_is_refused_at_the_first_checkpoint(tmp_path: Path):
    # The rule the check enforces, from torch itself: such a state saves, but does not load.
    assert not loads_with_weights_only({"extra": {"counts": np.zeros(2, dtype=np.int64)}}, tmp_path)

    run_dir = tmp_path / "run"
    args = [*TINY, "--algo", "numpy_state_agent:numpy_state", "--run-dir", str(run_dir)]
    refused = ace_rl_command("train", *args)
    assert refused.returncode == 2
    assert_one_error_line(
        refused.stderr,
        "agent state 'agent.extra.counts' holds a numpy.ndarray",
        "weights_only=True",
        "store a torch.Tensor or a plain list",
    )
    assert state_steps(run_dir) == []
    assert not (run_dir / "checkpoints" / "final.pt").exists()
    assert list((run_dir / "checkpoints").glob("*.tmp")) == []
    # It stopped at the first checkpoint due (the first episode end after 100 env steps), not at the end.
    assert int(episodes(run_dir)[-1][0]) < 200
