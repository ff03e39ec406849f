"""`ace-rl sweep` input and outputs: the accepted algorithms in its help, a bound on the grid's size, list options
given whole to every run, --out where nothing can be written, the status of runs stopped before their first
checkpoint, a sweep.json rebuilt from the command that created the sweep, and a run killed before its first
checkpoint restarted in place (as `ace-rl train --resume` does) without losing its directory's other files.
"""

import itertools
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ace_rl.agents import builtin_agent_names
from ace_rl.cli import main
from ace_rl.rundir import RunLock
from ace_rl.sweep import MAX_RUNS
from test_run_safety import assert_one_line_error, snapshot, tmpfs
from test_sweep import (
    ENV,
    EPISODES_HEADER,
    TINY,
    ace_rl_command,
    needs_sweep_extra,
    read_rows,
    worker_pids,
    write_sweep,
)


def refusal(capsys, argv: list[str]) -> str:
    """Run `ace-rl ARGV`, expect a refusal, and return its one line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code != 0
    stderr = capsys.readouterr().err
    assert_one_line_error(stderr)
    return stderr.strip()


def test_help_names_every_algorithm_that_train_accepts(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--help"])
    assert exit_info.value.code == 0
    assert f"Algorithms ({', '.join(builtin_agent_names())})" in capsys.readouterr().out
    assert builtin_agent_names() == ["ace", "sac", "td3"]


# ------------------------------------------------------------------------------------------------------------------
# The grid's size
# ------------------------------------------------------------------------------------------------------------------
# Each grid is given with an unknown task, so that a sweep that plans it rather than refusing it stops there too.
GRIDS = [
    (
        ["--seed", "0-99999999999"],
        "--seed 0-99999999999 brings the number of seeds to 100,000,000,000, more than the 10,000",
    ),
    (["--seed", "0-30000"], "--seed 0-30000 brings the number of seeds to 30,001, more than the 10,000"),
    (
        ["--seed", "0-4999", "--algo", "ace", "sac", "--gamma", "0.9", "0.99"],
        "the grid has 20,000 runs (1 env x 2 algo x 5000 seed x 2 gamma), more than the 10,000",
    ),
    (["--seed", "0-9999"], "unknown environment 'Hoper-v5'"),  # the largest grid allowed: planned in seconds
]
# Runs `ace-rl sweep` once per grid in one process (one import of torch and Ray) and prints what each did.
REFUSALS = """
import contextlib, io, json, sys, time
from ace_rl.cli import main
for argv in json.loads(sys.argv[1]):
    stderr, started = io.StringIO(), time.monotonic()
    try:
        with contextlib.redirect_stderr(stderr):
            main(argv)
        code = 0
    except SystemExit as exit:
        code = exit.code
    print(json.dumps([code, stderr.getvalue(), time.monotonic() - started]), flush=True)
"""


def limit_memory() -> None:
    """Before, --seed 0-99999999999 filled the memory until MemoryError: keep a failing sweep from taking it all."""
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


@needs_sweep_extra
def test_a_grid_over_the_limit_is_refused_in_one_line_before_it_is_expanded(tmp_path: Path):
    """Before: --seed 0-99999999999 ended in MemoryError, and --seed 0-30000 planned its runs silently for minutes."""
    assert MAX_RUNS == 10_000
    out = tmp_path / "sweep"
    argvs = [["sweep", "--out", str(out), "--env", "Hoper-v5", *grid] for grid, _ in GRIDS]
    process = subprocess.run(
        [sys.executable, "-c", REFUSALS, json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=limit_memory,
    )
    results = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("[")]
    assert len(results) == len(GRIDS), process.stderr[-3000:]
    for (grid, message), (code, stderr, seconds) in zip(GRIDS, results):
        assert code == 2, (grid, stderr)
        assert_one_line_error(stderr, message)
        assert seconds < 20, (grid, seconds)  # planning 10,000 runs took about 200 s before
    assert not out.exists()


# ------------------------------------------------------------------------------------------------------------------
# --out where nothing can be written
# ------------------------------------------------------------------------------------------------------------------
@needs_sweep_extra
def test_an_out_that_cannot_be_written_is_one_line_naming_it_and_the_cause(tmp_path: Path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine\n")
    with tmpfs(tmp_path / "ro", "1m") as disk:
        (disk / "empty").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        before = snapshot(tmp_path), sorted(tmp_path.rglob("*"))
        cases = [
            (disk / "sub", "Read-only file system"),
            (disk / "sub" / "deeper", "Read-only file system"),
            (disk / "empty", "Read-only file system"),  # an existing directory: it was "in use by another ace-rl sweep"
            (a_file / "sub", f"{a_file} is a file, not a directory"),
            (a_file, f"{a_file} is a file, not a directory"),
        ]
        for out, cause in cases:
            error = refusal(capsys, ["sweep", "--out", str(out), "--env", ENV, *TINY])
            assert str(out) in error and cause in error and "in use" not in error, error
            assert (snapshot(tmp_path), sorted(tmp_path.rglob("*"))) == before
    assert (tmp_path / "a_file").read_text() == "mine\n"


@needs_sweep_extra
def test_out_under_a_writable_parent_that_fails_leaves_no_parent_behind(tmp_path: Path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    error = refusal(capsys, ["sweep", "--out", str(a_file / "a" / "b"), "--env", ENV, *TINY])
    assert "is a file, not a directory" in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a_file"]


# ------------------------------------------------------------------------------------------------------------------
# The status of runs that have a directory but nothing to continue from
# ------------------------------------------------------------------------------------------------------------------
@needs_sweep_extra
def test_status_calls_stopped_only_a_run_it_can_continue_from_a_checkpoint(tmp_path: Path, capsys):
    out = tmp_path / "sweep"
    write_sweep(out, ["--env", ENV, "--algo", "ace", "sac", "--seed", "0", "1"], TINY)
    resumable, no_checkpoint, no_config, untouched = (
        out / f"{ENV}__{algo}__s{seed}" for algo, seed in (("ace", 0), ("ace", 1), ("sac", 0), ("sac", 1))
    )
    for run_dir in (resumable, no_checkpoint):
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "config.json").write_text("{}")
        (run_dir / "episodes.csv").write_text(EPISODES_HEADER + "50,1,9,50,1,0.5\n120,2,11,70,1,1.2\n")
    (resumable / "checkpoints" / "state-0000000100.pt").write_bytes(b"")
    no_config.mkdir()
    with RunLock(no_config):
        pass  # a start killed before its config.json leaves the lock file

    main(["sweep", "--status", str(out)])  # exit status 0 (no run failed): returns
    lines = capsys.readouterr().out.splitlines()
    rows = {
        run_dir.name: next(line for line in lines if run_dir.name in line)
        for run_dir in (resumable, no_checkpoint, no_config, untouched)
    }
    assert re.search(r"\bstopped\b.*120 / 300.*continues from its checkpoint", rows[resumable.name])
    assert re.search(
        r"\bqueued\b.*stopped before its first checkpoint: starts again from env step 0", rows[no_checkpoint.name]
    )
    for run_dir in (no_config, untouched):
        assert re.search(r"\bqueued\b.*0 / 300", rows[run_dir.name]) and "stopped" not in rows[run_dir.name]


# ------------------------------------------------------------------------------------------------------------------
# One real sweep: --wandb-tags a b over 2 seeds; seed 0's worker is SIGKILLed before its first checkpoint
# ------------------------------------------------------------------------------------------------------------------
NO_CHECKPOINT_BEFORE_THE_END = [
    "100000" if previous == "--checkpoint-every" else token for previous, token in zip(["", *TINY], TINY)
]
COMMAND = ["--env", ENV, "--seed", "0-1", "--wandb-tags", "a", "b", *NO_CHECKPOINT_BEFORE_THE_END]
RUNS = [f"{ENV}__ace__s0", f"{ENV}__ace__s1"]
KILLED = RUNS[0]  # the first run submitted (before: a directory whose name also held the first tag)
NOTE = "my notes on this run\n"


@dataclass
class KilledSweep:
    out: Path
    returncode: int
    stderr: str
    killed: str  # the name of the run directory whose worker was killed


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory) -> KilledSweep:
    import importlib.util

    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("rich") is None:
        pytest.skip('needs the sweep extra: pip install -e ".[sweep]"')
    out = tmp_path_factory.mktemp("input-sweep") / "grid"
    logs = tmp_path_factory.mktemp("input-sweep-output")
    with open(logs / "stderr", "w") as stderr:
        process = subprocess.Popen(
            ace_rl_command("sweep", "--out", str(out), *COMMAND), stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            deadline = time.time() + 400
            while (killed := started_run(out)) is None:
                assert process.poll() is None and time.time() < deadline, "the sweep ended before the run started"
                time.sleep(0.02)
            (killed / "notes.txt").write_text(NOTE)  # what a user keeps in the run directory
            pids = worker_pids(killed)
            assert pids and not (killed / "checkpoints" / "final.pt").exists(), "the run was not caught mid-way"
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            assert not list((killed / "checkpoints").glob("state-*.pt")), "the run had a checkpoint when killed"
            process.wait(timeout=600)
        finally:
            if process.poll() is None:
                process.kill()
    return KilledSweep(out, process.returncode, (logs / "stderr").read_text(), killed.name)


def started_run(out: Path) -> Path | None:
    """The first run's directory once it has its config.json and an episode."""
    for run_dir in out.glob(f"{KILLED}*"):
        if (run_dir / "config.json").is_file() and read_rows_if_any(run_dir / "episodes.csv"):
            return run_dir
    return None


def read_rows_if_any(path: Path) -> list[dict]:
    try:
        return read_rows(path)
    except OSError:
        return []


def test_an_option_that_takes_a_list_goes_whole_to_every_run(killed_sweep: KilledSweep):
    """Before: --wandb-tags a b was an axis, giving runs __wandb-tags-a and __wandb-tags-b that the report counted
    as two seeds."""
    assert killed_sweep.returncode == 0, killed_sweep.stderr
    assert sorted(path.name for path in killed_sweep.out.iterdir() if path.name.startswith(ENV)) == RUNS
    document = json.loads((killed_sweep.out / "sweep.json").read_text())
    assert list(document["grid"]) == ["env", "algo", "seed"]
    assert document["options"][:3] == ["--wandb-tags", "a", "b"]
    for name in RUNS:
        assert json.loads((killed_sweep.out / name / "config.json").read_text())["wandb_tags"] == ["a", "b"], name
        assert (killed_sweep.out / name / "checkpoints" / "final.pt").is_file(), name


def test_a_run_killed_before_its_first_checkpoint_restarts_in_place_keeping_its_files(killed_sweep: KilledSweep):
    """Before: the retry deleted the run directory (and with it wandb_id.txt and anything else kept there), while
    `ace-rl train --resume` restarts such a run in place."""
    run_dir = killed_sweep.out / killed_sweep.killed
    log = (killed_sweep.out / "logs" / f"{killed_sweep.killed}.log").read_text()
    assert log.count(": starting: ace-rl train ") == 1, log
    assert log.count(": restarting from env step 0 (stopped before its first checkpoint)") == 1, log
    assert "starting it again from env step 0" in log  # `ace-rl train --resume`'s own line
    assert (run_dir / "notes.txt").read_text() == NOTE
    episodes = read_rows(run_dir / "episodes.csv")
    assert [int(row["episode"]) for row in episodes] == list(range(1, len(episodes) + 1))
    steps = [0] + [int(row["env_step"]) for row in episodes]
    assert [later - earlier for earlier, later in itertools.pairwise(steps)] == [int(row["length"]) for row in episodes]
    assert [row["env_step"] for row in read_rows(run_dir / "metrics.csv")] == ["150", "300"]


def test_a_deleted_sweep_json_is_rebuilt_by_the_command_that_created_the_sweep(killed_sweep: KilledSweep, capsys):
    out = killed_sweep.out
    document = json.loads((out / "sweep.json").read_text())
    (out / "sweep.json").unlink()
    runs_before = {name: snapshot(out / name) for name in RUNS}

    # Without the grid, the refusal says how to take the sweep up again.
    error = refusal(capsys, ["sweep", "--out", str(out)])
    assert "holds files but no sweep.json" in error and "full command that created it" in error, error
    # The full command: every run matches, so sweep.json is written again and the sweep finishes.
    main(["sweep", "--out", str(out), *COMMAND])  # exit status 0: returns
    captured = capsys.readouterr()
    assert "had no sweep.json; written again from this command" in captured.err, captured.err
    assert "2 of 2 runs done" in captured.err
    rebuilt = json.loads((out / "sweep.json").read_text())
    for key in ("grid", "options", "runs"):
        assert rebuilt[key] == document[key], key
    assert {name: snapshot(out / name) for name in RUNS} == runs_before

    # A run whose config.json does not match what the command plans for it: refused, naming it and the setting.
    (out / "sweep.json").unlink()
    config_path = out / RUNS[1] / "config.json"
    config = json.loads(config_path.read_text())
    config["gamma"] = 0.98
    config_path.write_text(json.dumps(config))
    error = refusal(capsys, ["sweep", "--out", str(out), *COMMAND])
    assert f"its run {RUNS[1]} differs from this command: gamma 0.98 in its config.json, 0.99 now (--gamma)" in error, (
        error
    )
    # So is a directory that is no run of the grid.
    (out / "someone-elses-run").mkdir()
    config["gamma"] = 0.99
    config_path.write_text(json.dumps(config))
    error = refusal(capsys, ["sweep", "--out", str(out), *COMMAND])
    assert "holds someone-elses-run, which is no run of this grid" in error, error
    assert not (out / "sweep.json").exists()
