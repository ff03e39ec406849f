"""Training under faults at its edges: a run's logs that cannot be created at start (with a W&B run open), a
resume after a kill that followed a newer best.pt, and a wandb that is installed but broken.

Each fault is real: a tmpfs out of inodes, a path in the way of a directory, a real SIGKILL, a real `wandb`
package that raises on import.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ace_rl.checkpoint import load_training_state, read_policy_file, save_training_state
from ace_rl.cli import main
from ace_rl.config import preset_config, to_json_dict
from ace_rl.rundir import RunDir
from test_resume import wait_for_state
from test_run_safety import ace_rl, finish, run, snapshot, tmpfs, wait_for
from test_wandb import finished_records, needs_wandb, of_kind, offline, offline_run_files  # noqa: F401 - a fixture

TINY = [
    "--env",
    "InvertedPendulum-v5",
    "--seed",
    "0",
    "--preset",
    "small",
    "--start-steps",
    "100",
    "--batch-size",
    "32",
    "--hidden-size",
    "32",
    "--eval-episodes",
    "1",
    "--threads",
    "1",
    "--no-progress",
]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ace-rl: error:")]


def assert_one_error_line(stderr: str, *fragments: str) -> None:
    """One `ace-rl: error:` line holding every fragment; besides it only `ace-rl:` notes, no traceback."""
    [line] = error_lines(stderr)
    assert all(line.startswith("ace-rl: ") for line in stderr.splitlines() if line.strip()), stderr
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def exit_codes(wandb_dir: Path, run_id: str) -> list[int]:
    """The exit code of each process's part of the offline W&B run; a part that was never finished has no exit
    record (finished_records waits for one, then gives up)."""
    codes = []
    for path in offline_run_files(wandb_dir, run_id):
        exits = of_kind(finished_records(path, timeout_s=15), "exit")
        codes.extend(exit.exit_code for exit in exits)
    return codes


def open_files_under(directory: Path) -> list[str]:
    """The files under ``directory`` that this process holds open."""
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(directory.resolve()) + os.sep):
            held.append(target)
    return held


# --------------------------------------------------------------------------------------------------
# The logs cannot be created at start: one line, the W&B run finished (as failed), nothing left open
# --------------------------------------------------------------------------------------------------
@needs_wandb
def test_logs_that_cannot_be_created_at_start_give_one_line_and_finish_the_wandb_run(
    offline: Path,  # noqa: F811 - the fixture imported from test_wandb
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
):
    settings = [*TINY, "--total-steps", "300", "--eval-every", "300", "--wandb-project", "ace-test"]
    # A file system out of inodes right where TensorBoard's directory would go: the run directory, its lock,
    # config.json, wandb_id.txt, actions.json and the four CSV files fit, tensorboard/ does not.
    with tmpfs(tmp_path / "disk", "4m,nr_inodes=10") as disk:
        run_dir = disk / "run"
        code, _, stderr = run("train", *settings, "--run-dir", str(run_dir))
        assert code == 1
        assert_one_error_line(stderr, f"cannot write {run_dir / 'tensorboard'}: No space left on device")
        run_id = RunDir(run_dir).wandb_id.read_text().strip()
        assert exit_codes(offline, run_id) == [1]
        killed_early = tmp_path / "run"
        shutil.copytree(run_dir, killed_early)

    # Out of inodes one step earlier, where the W&B run id is kept (before the W&B run is opened).
    with tmpfs(tmp_path / "smaller", "4m,nr_inodes=4") as disk:
        with pytest.raises(SystemExit) as exited:
            main(["train", *settings, "--run-dir", str(disk / "run")])
        assert exited.value.code == 1
        assert_one_error_line(
            capsys.readouterr().err, f"cannot write {RunDir(disk / 'run').wandb_id}: No space left on device"
        )

    # The same run resumed (it has no checkpoint, so it starts again) where a file is in tensorboard/'s place,
    # through the command's own entry in this process: the W&B run and every file must be closed on return.
    RunDir(killed_early).tensorboard.write_text("in the way\n")
    with pytest.raises(SystemExit) as exited:
        main(["train", "--resume", str(killed_early), "--no-progress"])
    assert exited.value.code == 1
    assert_one_error_line(
        capsys.readouterr().err,
        f"ace-rl: error: {killed_early / 'tensorboard'} is not a directory; TensorBoard's event files go there",
    )
    import wandb

    assert wandb.run is None  # finished, not left open in this process
    assert exit_codes(offline, run_id) == [1, 1]  # the same W&B run, continued, and finished as failed
    assert open_files_under(killed_early) == []


# --------------------------------------------------------------------------------------------------
# best.pt after a resume is the one of the checkpoint's time
# --------------------------------------------------------------------------------------------------
def best_policy(run_dir: Path) -> tuple[int, float, dict[str, torch.Tensor]]:
    actor, metadata = read_policy_file(RunDir(run_dir).policy("best"))
    assert metadata.env_step is not None and metadata.eval_return_mean is not None
    return metadata.env_step, metadata.eval_return_mean, actor.state_dict()


def best_step(run_dir: Path) -> int:
    return best_policy(run_dir)[0] if RunDir(run_dir).policy("best").is_file() else 0


def newest_state_step(run_dir: Path) -> int:
    return int(RunDir(run_dir).states()[-1].name[len("state-") :].split(".")[0])


def test_a_resume_restores_the_best_policy_of_its_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    # One checkpoint at the first episode end after step 600, the next after 1200; evaluations every 100 steps
    # write best.pt at 700 and 800 (seed 0), between the two.
    settings = [*TINY, "--eval-every", "100", "--checkpoint-every", "600"]
    killed = tmp_path / "killed"
    process = ace_rl("train", *settings, "--total-steps", "1600", "--run-dir", str(killed))
    wait_for_state(killed)
    checkpoint_step = newest_state_step(killed)
    wait_for(lambda: best_step(killed) > checkpoint_step, what="a best.pt newer than the checkpoint")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert newest_state_step(killed) == checkpoint_step, "a second checkpoint came before the kill"
    future_step, future_return, _ = best_policy(killed)
    assert future_step > checkpoint_step
    # A copy whose checkpoint is made like those written before best.pt's content was kept in checkpoints.
    old_format = tmp_path / "old-format"
    shutil.copytree(killed, old_format)
    state, _, _ = load_training_state(old_format)
    del state["best_policy"]
    save_training_state(old_format, checkpoint_step, state)

    # Continued to a budget that ends before that newer best.pt's evaluation, and compared with an uninterrupted
    # run of that budget: best.pt must be the uninterrupted run's, and its return the run's best return.
    total_steps = str(checkpoint_step + 1)
    main(["train", "--resume", str(killed), "--total-steps", total_steps, "--no-progress"])
    stderr = capsys.readouterr().err
    assert "ace-rl: restored best.pt to the best policy as of the checkpoint" in stderr
    assert f"in place of the one of env step {future_step}" in stderr
    reference = tmp_path / "reference"
    main(["train", *settings, "--total-steps", total_steps, "--run-dir", str(reference)])

    resumed_step, resumed_return, resumed_actor = best_policy(killed)
    reference_step, reference_return, reference_actor = best_policy(reference)
    assert (resumed_step, resumed_return) == (reference_step, reference_return)
    assert resumed_step <= checkpoint_step + 1
    assert resumed_actor.keys() == reference_actor.keys()
    assert all(torch.equal(resumed_actor[name], reference_actor[name]) for name in resumed_actor)
    state, _, _ = load_training_state(killed)
    assert state["best_return"] == resumed_return

    # An old checkpoint cannot restore the best.pt of its time: the newer best.pt stays, and its return becomes
    # the run's best return, so the two still agree.
    main(["train", "--resume", str(old_format), "--total-steps", total_steps, "--no-progress"])
    assert f"ace-rl: kept best.pt of env step {future_step}, written after the checkpoint" in capsys.readouterr().err
    state, _, _ = load_training_state(old_format)
    assert best_policy(old_format)[:2] == (future_step, future_return) and state["best_return"] == future_return


# --------------------------------------------------------------------------------------------------
# A wandb that is installed but raises on import
# --------------------------------------------------------------------------------------------------
def test_a_broken_wandb_is_refused_in_one_line_before_anything_is_written(tmp_path: Path):
    broken = tmp_path / "site" / "wandb"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("libwandb_core.so: cannot open shared object file")\n')
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(broken.parent), os.environ.get("PYTHONPATH", "")])}
    fragments = (
        f"the wandb at {broken / '__init__.py'} fails to import",
        "ImportError: libwandb_core.so: cannot open shared object file",
        'pip install "ace-rl[wandb]"',
    )

    work = tmp_path / "work"  # a fresh run without --run-dir would go to work/runs/...
    work.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "ace_rl.cli", "train", *TINY, "--total-steps", "300", "--wandb-project", "ace-test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=work,
        env=environment,
    )
    code, _, stderr = finish(process)
    assert code == 2
    assert_one_error_line(stderr, *fragments)
    assert list(work.iterdir()) == []

    # A resume with --wandb-project: the run directory stays as it was, config.json included.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    RunDir(run_dir).config.write_text(json.dumps(to_json_dict(preset_config("small", env="InvertedPendulum-v5"))))
    before = snapshot(run_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "ace_rl.cli", "train", "--resume", str(run_dir), "--wandb-project", "ace-test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    code, _, stderr = finish(process)
    assert code == 2
    assert_one_error_line(stderr, *fragments)
    assert snapshot(run_dir) == before and sorted(path.name for path in run_dir.iterdir()) == ["config.json"]


def test_a_sweep_refuses_a_broken_wandb_before_anything_is_written(tmp_path: Path):
    pytest.importorskip("ray")
    broken = tmp_path / "site" / "wandb"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("libwandb_core.so: cannot open shared object file")\n')
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(broken.parent), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "sweep"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ace_rl.cli",
            "sweep",
            "--out",
            str(out),
            "--env",
            "InvertedPendulum-v5",
            "--seed",
            "0-1",
            "--preset",
            "small",
            "--total-steps",
            "300",
            "--wandb-project",
            "ace-test",
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert result.returncode == 2
    assert_one_error_line(result.stderr, f"the wandb at {broken / '__init__.py'} fails to import")
    assert not out.exists()
