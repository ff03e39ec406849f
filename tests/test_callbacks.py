"""Callbacks (ace_rl.callbacks): a user's callback stops a run early (Python API and `ace-rl train --callback`),
EarlyStopping decides as computed by hand, a run with callbacks resumes after SIGKILL exactly (the CSV rows and
the callbacks' own state), a bad --callback is one line, and a resume imports nothing the run directory names."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ace_rl
from ace_rl.callbacks import Callback, CallbackError, EarlyStopping, TrainingContext, load_callback
from ace_rl.cli import main
from ace_rl.config import ConfigError
from ace_rl.evaluation import Evaluation
from ace_rl.runstate import RunPhase, run_state

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))  # callback_helpers, as the subprocesses below find it on PYTHONPATH

import callback_helpers  # noqa: E402

SMALL = dict(
    env="Pendulum-v1",
    preset="small",
    seed=1,
    total_steps=600,
    start_steps=100,
    batch_size=32,
    hidden_size=32,
    eval_every=100,
    eval_episodes=1,
    checkpoint_every=100,
    causal_interval=200,
    causal_samples=100,
    threads=1,
    progress=False,
)


def evaluation(mean: float, success: float | None = None) -> Evaluation:
    return Evaluation(np.array([mean]), None if success is None else np.array([success > 0.5]))


def decisions(stopper: EarlyStopping, values: list[float | None]) -> list[bool]:
    return [stopper.decide(value) is not None for value in values]


def test_early_stopping_decides_as_computed_by_hand():
    # Threshold 10: stops at the first value at or above it.
    assert decisions(EarlyStopping(threshold=10), [1, 5, 9.99, 10, 3]) == [False, False, False, True, False]
    # Patience 2: best 5 at the 2nd; 4 and 5 (not above 5) are the two without improvement -> stop at the 4th.
    assert decisions(EarlyStopping(patience=2), [1, 5, 4, 5, 9]) == [False, False, False, True, False]
    # min_delta 1: 5.5 does not improve on 5 by more than 1; 6.5 does, and counting starts again.
    stopper = EarlyStopping(patience=2, min_delta=1.0)
    assert decisions(stopper, [5, 5.5, 6.5, 7, 7.4]) == [False, False, False, False, True]
    assert stopper.best == 6.5 and stopper.evaluations_without_improvement == 2
    # Success rate: an evaluation without one never improves.
    stopper = EarlyStopping(threshold=0.9, patience=3, metric="success_rate")
    assert decisions(stopper, [0.2, None, 0.95]) == [False, False, True]


def test_early_stopping_state_resumes_the_count_exactly():
    values = [3.0, 7.0, 6.0, 6.5, 2.0, 1.0]
    whole = decisions(EarlyStopping(patience=3), values)
    first = EarlyStopping(patience=3)
    head = decisions(first, values[:3])
    second = EarlyStopping(patience=3)
    second.load_state_dict(first.state_dict())
    assert head + decisions(second, values[3:]) == whole == [False, False, False, False, True, True]
    fresh = decisions(EarlyStopping(patience=3), values[3:])  # without the state it would go on longer
    assert fresh != whole[3:]


def test_early_stopping_asks_the_context_to_stop():
    class Context:
        reason: str | None = None

        def request_stop(self, reason: str) -> None:
            self.reason = reason

    context = Context()
    stopper = EarlyStopping(threshold=-100.0)
    stopper.on_evaluation(context, evaluation(-150.0))  # type: ignore[arg-type]
    assert context.reason is None
    stopper.on_evaluation(context, evaluation(-99.0))  # type: ignore[arg-type]
    assert context.reason == "evaluation return -99 reached the threshold -100"


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_a_callback_stops_a_run_early_through_the_python_api(tmp_path: Path, capsys):
    calls: list[str] = []

    class StopAtThirdEvaluation(Callback):
        def on_training_start(self, context: TrainingContext) -> None:
            calls.append("start")

        def on_evaluation(self, context: TrainingContext, result: Evaluation) -> None:
            calls.append(f"evaluation {context.env_step}")
            if context.env_step == 300:
                context.request_stop("third evaluation")

        def on_training_end(self, context: TrainingContext) -> None:
            calls.append(f"end {context.env_step}")

    run = ace_rl.train(run_dir=tmp_path / "run", callbacks=[StopAtThirdEvaluation()], **SMALL)
    assert calls == ["start", "evaluation 100", "evaluation 200", "evaluation 300", "end 300"]
    assert [row["env_step"] for row in read_rows(run.run_dir / "metrics.csv")] == ["100", "200", "300"]
    stderr = capsys.readouterr().err
    assert "stopped early by callback" in stderr and "at env step 300 of 600: third evaluation" in stderr
    assert run.stopped_early is not None and run.stopped_early.env_step == 300
    assert run.policy("final").metadata.env_step == 300
    assert run_state(run.run_dir).phase is RunPhase.DONE  # finished, as at its total
    assert run_state(run.run_dir, total_steps=800).phase is RunPhase.RESUMABLE
    with pytest.raises(ConfigError, match=r"stopped early at env step 300 .*it is finished: pass a --total-steps"):
        ace_rl.resume(run.run_dir)
    # With a larger budget and without the callback the run goes on from the step it stopped at.
    resumed = ace_rl.resume(run.run_dir, total_steps=400)
    assert [row["env_step"] for row in read_rows(resumed.run_dir / "metrics.csv")] == ["100", "200", "300", "400"]
    assert resumed.stopped_early is None and run_state(resumed.run_dir).phase is RunPhase.DONE


def command(*args: str, **env: str) -> subprocess.Popen:
    environment = {**os.environ, **env}
    environment.pop("ACE_RL_TEST_SIGKILL_AT", None)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), environment.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "ace_rl.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=600)
    return process.returncode, stdout, stderr


def cli_options(settings: dict) -> list[str]:
    options: list[str] = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        options += (
            [flag] if value is True else ["--no-" + name.replace("_", "-")] if value is False else [flag, str(value)]
        )
    return options


def test_a_callback_named_on_the_command_line_stops_the_run_and_resume_imports_nothing(tmp_path: Path):
    run_dir = tmp_path / "run"
    marker = tmp_path / "imported.txt"
    options = cli_options(SMALL)
    code, stdout, stderr = finish(
        command(
            "train",
            *options,
            "--run-dir",
            str(run_dir),
            "--callback",
            "callback_helpers:stop_at_step",
            "--callback=callback_helpers:Counter",
            CALLBACK_HELPERS_IMPORTED=str(marker),
        )
    )
    assert code == 0, stderr
    assert f"run written to {run_dir}" in stdout
    lines = [line for line in stderr.splitlines() if "stopped early" in line]
    assert lines == [
        f"ace-rl: stopped early by callback callback_helpers.StopAtStep at env step {callback_helpers.STOP_AT} of 600: "
        f"env step {callback_helpers.STOP_AT} reached"
    ]
    assert len(marker.read_text().splitlines()) == 1
    assert json.loads((run_dir / "counter.json").read_text())["steps"] == callback_helpers.STOP_AT
    assert "callback_helpers" not in (run_dir / "config.json").read_text()  # files are data: no callback to import
    assert json.loads((run_dir / "stopped.json").read_text())["callback"] == "callback_helpers.StopAtStep"

    # --resume with a larger budget and no --callback: the module is not imported, the states it left are noted.
    code, _, stderr = finish(
        command("train", "--resume", str(run_dir), "--total-steps", "300", CALLBACK_HELPERS_IMPORTED=str(marker))
    )
    assert code == 0, stderr
    assert len(marker.read_text().splitlines()) == 1
    assert "callback callback_helpers.StopAtStep, which was not given again; continuing without it" not in stderr
    assert "callback counter, which was not given again; continuing without it" in stderr
    assert [row["env_step"] for row in read_rows(run_dir / "metrics.csv")] == ["100", "200", "300"]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("callback_helpers", "has no module:name form; --callback takes module:name"),
        ("no_such_module_anywhere:thing", "no module named 'no_such_module_anywhere'; --callback takes"),
        ("callback_helpers:missing", "module 'callback_helpers' has no attribute 'missing'; --callback takes"),
        ("callback_helpers:NOT_A_CALLBACK", "is a int, not callable; --callback takes"),
        ("callback_helpers:returns_a_number", "returns_a_number() returned a int, not an ace_rl.callbacks.Callback"),
        ("callback_helpers:fails", "calling fails() failed (RuntimeError: the factory broke, at "),
        ("callback_broken_module:anything", "importing 'callback_broken_module' failed (ImportError: this module"),
        ("os:getcwd", "'os' is a standard-library module"),
    ],
)
def test_a_bad_callback_is_one_line(tmp_path: Path, capsys, spec: str, fragment: str):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--env", "Pendulum-v1", "--run-dir", str(tmp_path / "run"), "--callback", spec])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ace-rl: error: --callback") and fragment in err, err
    assert not (tmp_path / "run").exists()
    if spec.endswith(":fails"):
        assert "callback_helpers.py:" in err  # the user's file and line
    with pytest.raises(CallbackError):
        load_callback(spec)


def test_api_refuses_what_is_not_a_callback(tmp_path: Path):
    with pytest.raises(CallbackError, match="got a function"):
        ace_rl.train(run_dir=tmp_path / "run", callbacks=[callback_helpers.stop_at_step], **SMALL)
    assert not (tmp_path / "run").exists()


# A run whose callbacks stop it at its third evaluation (1200), killed with SIGKILL once it has a checkpoint past
# the second (800): the patience count and Counter's counts must come back from the checkpoint.
HOPPER = [
    *("--env", "Hopper-v5", "--seed", "2", "--preset", "small", "--total-steps", "1600", "--start-steps", "200"),
    *("--batch-size", "64", "--hidden-size", "64", "--causal-interval", "400", "--causal-samples", "300"),
    *("--reset-interval", "300", "--reset-start", "400", "--eval-every", "400", "--eval-episodes", "2"),
    *("--checkpoint-every", "250", "--threads", "1", "--no-progress"),
]
CALLBACKS = ["--callback", "callback_helpers:flat_patience", "--callback", "callback_helpers:Counter"]
COMPARED = {
    "metrics.csv": ["env_step", "updates", "eval_return_mean", "eval_return_std"],
    "episodes.csv": ["env_step", "episode", "return", "length", "terminated"],
    "causal_weights.csv": ["env_step", "w0", "w1", "w2", "method", "dropped_columns", "note"],
    "resets.csv": ["env_step", "update", "dormancy_ratio", "reset_factor", "kind"],
}


def table(run_dir: Path, name: str) -> list[tuple]:
    return [tuple(row[column] for column in COMPARED[name]) for row in read_rows(run_dir / name)]


def test_a_run_with_callbacks_resumes_after_sigkill_with_identical_rows_and_callback_state(tmp_path: Path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    code, _, stderr = finish(command("train", *HOPPER, *CALLBACKS, "--run-dir", str(reference)))
    assert code == 0, stderr
    assert "stopped early by callback ace_rl.callbacks.EarlyStopping at env step 1200 of 1600" in stderr

    process = command("train", *HOPPER, *CALLBACKS, "--run-dir", str(killed))
    deadline = time.time() + 600
    while not any(int(path.name[6:16]) > 800 for path in (killed / "checkpoints").glob("state-*.pt.sha256")):
        assert time.time() < deadline and process.poll() is None, "no checkpoint past env step 800 appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "counter.json").exists()
    code, _, stderr = finish(command("train", "--resume", str(killed), *CALLBACKS))
    assert code == 0, stderr
    assert "not given again" not in stderr
    for name in COMPARED:
        assert table(killed, name) == table(reference, name), name
    assert [row[0] for row in table(killed, "metrics.csv")] == ["400", "800", "1200"]
    assert json.loads((killed / "counter.json").read_text()) == json.loads((reference / "counter.json").read_text())
    assert json.loads((killed / "stopped.json").read_text()) == json.loads((reference / "stopped.json").read_text())
