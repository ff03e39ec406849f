"""Faults in the user's own code and setup, each one line through the command (naming the environment, the agent, the
observation or the installed package, and the user's file and line), writing nothing or leaving the run resumable:
an environment that raises, returns NaN or changes its observation's shape in training, evaluation or export's
check; Box bounds that are not low < high; a replay buffer larger than the machine's memory; agents that lack what
the loop calls; a broken onnxruntime; a full disk under a new nested --out. ``--traceback`` or ``ACE_RL_TRACEBACK=1``
shows the whole traceback instead, with the same exit status: each error class's own (2 or 1).

Each fault is real: the environments of tests/misbehaving_envs.py, the agents of tests/misbehaving_agents.py, a real
package that raises on import, a real tmpfs out of inodes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import misbehaving_envs
from ace_rl.cli import main
from ace_rl.rundir import RunDir
from test_run_safety import assert_one_line_error, tmpfs

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
ENV_FILE = str(Path(misbehaving_envs.__file__).resolve())
FAULTY = "misbehaving_envs:Faulty-v0"
TINY = [
    "--algo",
    "sac",
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
    "--buffer-size",
    "5000",
    "--eval-episodes",
    "1",
    "--threads",
    "1",
    "--no-progress",
]


@pytest.fixture(autouse=True)
def trust_the_test_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs here name this directory's modules as their env; eval and export import them through the allow-list
    (tests/test_files_are_data.py checks that without it they are refused)."""
    monkeypatch.setenv("ACE_RL_TRUSTED_MODULES", "misbehaving_envs,misbehaving_agents")


def command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``ace-rl ARGV`` through the command's own entry in this process: its exit status and stderr."""
    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as exited:
        code = int(exited.code or 0)
    return code, capsys.readouterr().err


def faulty(fault: str, **kwargs: object) -> list[str]:
    arguments = ", ".join(f'"{name}": {value}' for name, value in kwargs.items())
    return ["--env", FAULTY, "--env-kwargs", f'{{"fault": "{fault}"{", " if arguments else ""}{arguments}}}']


# --------------------------------------------------------------------------------------------------
# The environment fails in training: one line naming it (and the user's file and line), the run resumable
# --------------------------------------------------------------------------------------------------
def test_an_env_that_raises_mid_training_is_one_line_at_its_own_line_and_the_run_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    run_dir = tmp_path / "run"

    def hook(args: threading.ExceptHookArgs) -> None:  # the process's own, as a notebook or a service sets one
        sys.__excepthook__(args.exc_type, args.exc_value, args.exc_traceback)

    monkeypatch.setattr(threading, "excepthook", hook)
    settings = [*TINY, *faulty("step-raises", after=250), "--total-steps", "400", "--checkpoint-every", "100"]
    code, stderr = command(["train", *settings, "--eval-every", "400", "--run-dir", str(run_dir)], capsys)
    assert code == 2
    checkpoint = RunDir(run_dir).states()[-1]
    assert_one_line_error(
        stderr,
        f"environment '{FAULTY}': step failed at env step 251 (ValueError: boom, at {ENV_FILE}:",
        f"last checkpoint: {checkpoint}",
    )
    assert "the rest of a long message" not in stderr
    assert threading.excepthook is hook  # train gives the process its own thread hook back, failed or not
    assert checkpoint.name == "state-0000000200.pt"

    # A fresh environment behaves for 250 steps again: the run continues from env step 200 and finishes.
    code, stderr = command(["train", "--resume", str(run_dir), "--no-progress"], capsys)
    assert code == 0, stderr
    assert RunDir(run_dir).policy("final").is_file()
    assert threading.excepthook is hook


@pytest.mark.parametrize(
    ("fault", "fragment"),
    [
        ("nan-observation", "the observation after a step at env step 121 is not finite (nan at index 1 of 3)"),
        ("nan-reward", "step returned the reward nan at env step 121; a finite number is needed"),
        ("shape-change", "the observation after a step at env step 121 has 4 values, its observation space 3"),
    ],
)
def test_nan_or_a_changed_shape_in_training_is_blamed_on_the_env_not_the_losses(
    fault: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    run_dir = tmp_path / "run"
    settings = [*TINY, *faulty(fault, after=120), "--total-steps", "300", "--eval-every", "300"]
    code, stderr = command(["train", *settings, "--run-dir", str(run_dir)], capsys)
    assert code == 2
    assert_one_line_error(stderr, f"environment '{FAULTY}': {fragment}", "last checkpoint: none yet")
    assert "loss" not in stderr
    assert RunDir(run_dir).states() == []


def test_a_nan_reward_in_evaluation_is_an_error_naming_the_env_not_a_success(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    run_dir = tmp_path / "run"
    # NaN only in the evaluation environment (seeded with the run's seed + 10,000).
    settings = [*TINY, *faulty("nan-reward", seeds_from=10_000), "--total-steps", "300", "--eval-every", "300"]
    code, stderr = command(["train", *settings, "--run-dir", str(run_dir)], capsys)
    assert code == 2
    assert_one_line_error(
        stderr, f"environment '{FAULTY}': step returned the reward nan in evaluation episode 1, step 1;"
    )
    assert not RunDir(run_dir).policy("best").exists()
    assert RunDir(run_dir).metrics.read_text().count("\n") == 1  # the header only: no NaN row


# --------------------------------------------------------------------------------------------------
# The environment cannot be trained on at all: one line, nothing written
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ("EqualActionBounds-v0", "has action bounds low 0.5 and high 0.5 in dimension 1; every action dimension needs"),
        ("InvertedActionBounds-v0", "has action bounds low 2 and high 1 in dimension 1; every action dimension needs"),
        (
            "ResetRaises-v0",
            f"reset(seed=0) failed (RuntimeError: the simulator did not start, at {ENV_FILE}:",
        ),
    ],
)
def test_envs_that_cannot_be_trained_on_are_one_line_and_write_nothing(
    env: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    run_dir = tmp_path / "run"
    code, stderr = command(["train", *TINY, "--env", f"misbehaving_envs:{env}", "--run-dir", str(run_dir)], capsys)
    assert code == 2
    assert_one_line_error(stderr, f"environment 'misbehaving_envs:{env}'", fragment)
    assert "second line" not in stderr
    assert not run_dir.exists()


def test_a_module_that_fails_to_import_with_a_long_message_is_one_line_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    module = tmp_path / "broken_env_module.py"
    module.write_text('import os\n\nraise RuntimeError("no simulator\\ninstalled here")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    run_dir = tmp_path / "run"
    code, stderr = command(["train", *TINY, "--env", "broken_env_module:Env-v0", "--run-dir", str(run_dir)], capsys)
    assert code == 2
    assert_one_line_error(
        stderr,
        f"importing module 'broken_env_module' failed (RuntimeError: no simulator, at {module.resolve()}:3)",
    )
    assert not run_dir.exists()


def test_a_replay_buffer_larger_than_memory_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    run_dir = tmp_path / "run"
    settings = [arg for arg in TINY if arg not in ("--buffer-size", "5000")]  # the small preset's 1,000,000
    code, stderr = command(
        ["train", *settings, "--env", "misbehaving_envs:HugeObservations-v0", "--run-dir", str(run_dir)], capsys
    )
    assert code == 2
    assert_one_line_error(
        stderr, "--buffer-size 1000000 with 100000 observation values needs 800.0 GB of replay memory", "smaller"
    )
    assert not run_dir.exists()


# --------------------------------------------------------------------------------------------------
# Agents that lack what the loop calls: one line naming the agent
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("agent", "fragment"),
    [
        (
            "without-trained-parameters",
            "the agent misbehaving_agents.WithoutTrainedParameters lacks trained_parameters; an agent needs",
        ),
        ("no-state-dict", "the agent misbehaving_agents.NoStateDict: state_dict() returned NoneType; it must return"),
        (
            "causal-without-weights",
            "the agent ddpg_agent.DDPG is registered with causal=True but has no set_causal_weights",
        ),
        ("float-losses", "the agent's update returned {'loss/critic': float, 'loss/actor': float}; it must return"),
    ],
)
def test_an_agent_that_breaks_the_protocol_is_one_line_naming_it(
    agent: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    run_dir = tmp_path / "run"
    settings = [*TINY, "--algo", f"misbehaving_agents:{agent}", "--env", FAULTY, "--env-kwargs", '{"fault": "none"}']
    code, stderr = command(["train", *settings, "--total-steps", "300", "--run-dir", str(run_dir)], capsys)
    assert code == 2
    assert_one_line_error(stderr, f"--algo misbehaving_agents:{agent}: {fragment}")
    assert RunDir(run_dir).states() == []  # nothing to resume from but the start: --resume starts it again


# --------------------------------------------------------------------------------------------------
# Evaluation and export of a run whose environment fails afterwards
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run on Faulty-v0 that behaved in training; the tests make it fail afterwards (FAULTY_FAULT)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    main(["train", *TINY, *faulty("none"), "--total-steps", "300", "--eval-every", "300", "--run-dir", str(run_dir)])
    return run_dir


def test_an_env_that_returns_nan_in_eval_is_one_line_naming_it(
    trained: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FAULTY_FAULT", "nan-observation")
    monkeypatch.setenv("FAULTY_AFTER", "60")
    code, stderr = command(["eval", str(trained), "--episodes", "3"], capsys)
    assert code == 2
    assert_one_line_error(
        stderr, f"environment '{FAULTY}': the observation after a step in evaluation episode 2, step 11 is not finite"
    )


@pytest.mark.parametrize(
    ("fault", "fragment"),
    [
        ("step-raises", f"could not draw observations from {FAULTY} (ValueError: boom, at {ENV_FILE}:"),
        # Policy.predict refuses the NaN observation the environment returned, while the check draws from it.
        ("nan-observation", f"could not draw observations from {FAULTY} (ValueError: observation holds nan"),
    ],
)
def test_an_env_that_fails_in_exports_check_is_named_not_the_export(
    fault: str,
    fragment: str,
    trained: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("FAULTY_FAULT", fault)
    monkeypatch.setenv("FAULTY_AFTER", "100")
    out = tmp_path / "policy.pt"
    code, stderr = command(["export", str(trained), "--out", str(out), "--format", "torchscript"], capsys)
    assert code == 2
    assert_one_line_error(stderr, fragment, "nothing was written")
    assert "differs" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_under_a_new_nested_out_leaves_no_directories(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # Inodes for the file system's root and a/b/c, none for the file.
    with tmpfs(tmp_path / "disk", "4m,nr_inodes=4") as disk:
        out = disk / "a" / "b" / "c" / "policy.pt"
        code, stderr = command(["export", str(trained), "--out", str(out), "--format", "torchscript"], capsys)
        assert code == 1
        assert_one_line_error(stderr, f"cannot write {out}: No space left on device")
        assert list(disk.iterdir()) == []


def subprocess_environment(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, **extra}


def test_a_broken_onnxruntime_is_one_line_naming_the_package(trained: Path, tmp_path: Path):
    pytest.importorskip("onnx")
    broken = tmp_path / "site" / "onnxruntime"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("libonnxruntime.so.1: cannot open shared object file")\n')
    environment = subprocess_environment()
    environment["PYTHONPATH"] = os.pathsep.join([str(broken.parent), environment["PYTHONPATH"]])
    out = tmp_path / "out" / "policy.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "ace_rl.cli", "export", str(trained), "--out", str(out)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert result.returncode == 2
    assert_one_line_error(
        result.stderr,
        f"the onnxruntime at {broken / '__init__.py'} fails to import (ImportError: libonnxruntime.so.1: cannot open",
        'pip install "ace-rl[export]"',
    )
    assert not out.parent.exists()


def test_ace_rl_traceback_shows_the_whole_chain_down_to_the_users_line(trained: Path, tmp_path: Path):
    argv = [sys.executable, "-m", "ace_rl.cli", "export", str(trained), "--out", str(tmp_path / "p.pt")]
    argv += ["--format", "torchscript"]
    fault = {"FAULTY_FAULT": "step-raises", "FAULTY_AFTER": "10"}
    short = subprocess.run(argv, capture_output=True, text=True, env=subprocess_environment(**fault), timeout=300)
    assert short.returncode == 2
    assert_one_line_error(short.stderr, "(ValueError: boom, at")

    environment = subprocess_environment(**fault, ACE_RL_TRACEBACK="1")
    whole = subprocess.run(argv, capture_output=True, text=True, env=environment, timeout=300)
    assert whole.returncode == 2  # the error's own exit status, traceback or not
    assert "Traceback (most recent call last)" in whole.stderr
    assert f'File "{ENV_FILE}"' in whole.stderr
    assert "ValueError: boom\nthe rest of a long message" in whole.stderr
    assert whole.stderr.rstrip().splitlines()[-1].startswith("ace_rl.export.ExportError: the check of the export")


# --------------------------------------------------------------------------------------------------
# Where in the user's code, and the whole traceback on request (--traceback or ACE_RL_TRACEBACK=1)
# --------------------------------------------------------------------------------------------------
DIVIDING_ENV = """import gymnasium as gym
import numpy as np


class Divides(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        reward = 1 / 0
        return np.zeros(2, dtype=np.float32), reward, False, False, {}
"""


def user_module(directory: Path, name: str, text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    """A module of the user's, importable as ``name``: its resolved path, and the line of its fault (marked in
    ``text`` by ``1 / 0`` or ``raise``)."""
    path = directory / f"{name}.py"
    path.write_text(text)
    monkeypatch.syspath_prepend(str(directory))
    monkeypatch.delitem(sys.modules, name, raising=False)  # another test's module of that name
    line = next(number for number, code in enumerate(text.splitlines(), 1) if "1 / 0" in code or "raise " in code)
    return str(path.resolve()), line


@pytest.mark.parametrize("traceback_from", ["", "flag", "variable"])
def test_an_env_fault_names_the_users_file_and_line_and_the_whole_traceback_on_request(
    traceback_from: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    path, line = user_module(tmp_path, "dividing_env", DIVIDING_ENV, monkeypatch)
    argv = ["train", *TINY, "--env", "dividing_env:Divides", "--run-dir", str(tmp_path / "run")]
    if traceback_from == "flag":
        argv.append("--traceback")
    monkeypatch.setenv("ACE_RL_TRACEBACK", "1" if traceback_from == "variable" else "0")
    code, stderr = command(argv, capsys)
    assert code == 2
    if not traceback_from:
        assert_one_line_error(stderr, f"step(action) failed (ZeroDivisionError: division by zero, at {path}:{line})")
        assert "Traceback" not in stderr
        return
    # The user's frame in the chain, then the one-line error as the traceback's last line.
    assert stderr.startswith("Traceback (most recent call last):")
    assert f'File "{path}", line {line}, in step' in stderr
    assert "ZeroDivisionError: division by zero\n\nThe above exception was the direct cause" in stderr
    last = stderr.rstrip().splitlines()[-1]
    assert last.startswith("ace_rl.envs.EnvError: environment 'dividing_env:Divides': step(action) failed")
    assert not (tmp_path / "run").exists()


def test_an_agent_module_that_fails_to_import_names_the_users_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    path, line = user_module(
        tmp_path, "crashing_agent", 'import os\n\nraise RuntimeError("no GPU here\\nsecond line")\n', monkeypatch
    )
    argv = ["train", *TINY, "--algo", "crashing_agent:mine", "--env", "Pendulum-v1"]
    code, stderr = command(argv, capsys)
    assert code == 2
    assert_one_line_error(
        stderr,
        f"--algo crashing_agent:mine: module 'crashing_agent' does not import (RuntimeError: no GPU here, at "
        f"{path}:{line})",
    )
    code, stderr = command([*argv, "--traceback"], capsys)
    assert code == 2
    assert f'File "{path}", line {line}, in <module>' in stderr and "RuntimeError: no GPU here\nsecond line" in stderr
    assert stderr.rstrip().splitlines()[-1].startswith("ace_rl.errors.ConfigError: --algo crashing_agent:mine")
    # A module that is not there has no line of the user's to name
    code, stderr = command(["train", *TINY, "--algo", "no_such_agent_module:mine", "--env", "Pendulum-v1"], capsys)
    assert code == 2
    assert_one_line_error(stderr, "module 'no_such_agent_module' does not import (ModuleNotFoundError: No module named")
    assert " at " not in stderr


# The exit status of each of ace-rl's errors, as docs/training.md documents it: 2 for the user's input or code,
# 1 for a fault of the run; the same with the whole traceback.
EXIT_STATUS = [
    ("ace_rl.config", "ConfigError", 2),
    ("ace_rl.envs", "EnvError", 2),
    ("ace_rl.checkpoint", "CheckpointError", 2),
    ("ace_rl.video", "VideoError", 2),
    ("ace_rl.wandb_logger", "WandbError", 2),
    ("ace_rl.export", "ExportError", 2),
    ("ace_rl.trust", "UntrustedCodeError", 2),
    ("ace_rl.agents", "AgentError", 2),
    ("ace_rl.report", "ReportError", 2),
    ("ace_rl.sweep", "SweepError", 2),
    ("ace_rl.trainer", "NonFiniteError", 1),
    ("ace_rl.rundir", "RunDirError", 1),
    ("ace_rl.rundir", "RunDirBusy", 1),
]


@pytest.mark.parametrize(("module", "name", "status"), EXIT_STATUS, ids=[name for _, name, _ in EXIT_STATUS])
@pytest.mark.parametrize("whole_traceback", [False, True])
def test_each_error_has_its_exit_status_with_or_without_the_traceback(
    module: str,
    name: str,
    status: int,
    whole_traceback: bool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    import importlib

    import ace_rl.cli

    error_class = getattr(importlib.import_module(module), name)

    def fails(argv: object) -> None:
        raise error_class("what went wrong, and what is accepted")

    monkeypatch.setattr(ace_rl.cli, "run_envs", fails)
    code, stderr = command(["envs", *(["--traceback"] if whole_traceback else [])], capsys)
    assert code == status
    if whole_traceback:
        assert stderr.startswith("Traceback (most recent call last):") and "in fails" in stderr
        assert stderr.rstrip().splitlines()[-1].endswith(f"{name}: what went wrong, and what is accepted")
    else:
        assert stderr == "ace-rl: error: what went wrong, and what is accepted\n"


def test_an_exception_that_is_not_ace_rls_keeps_pythons_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    import ace_rl.cli

    def fails(argv: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(ace_rl.cli, "run_envs", fails)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(["envs"])
