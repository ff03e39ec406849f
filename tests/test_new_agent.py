"""A new algorithm in one file: DDPG, defined in tests/ddpg_agent.py outside the package and named on the command
line as --algo ddpg_agent:ddpg, goes through train, --resume after SIGKILL, eval, export, a sweep and a report."""

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
import torch

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")])}
DDPG = "ddpg_agent:ddpg"
POINT = "examples.point_reach:PointReach-v0"
TINY = [
    "--env",
    POINT,
    "--algo",
    DDPG,
    "--preset",
    "small",
    "--total-steps",
    "900",
    "--start-steps",
    "200",
    "--batch-size",
    "64",
    "--hidden-size",
    "32",
    "--eval-every",
    "300",
    "--eval-episodes",
    "2",
    "--checkpoint-every",
    "100",
    "--log-every",
    "100",
    "--threads",
    "1",
    "--no-progress",
    "--seed",
    "3",
]


def command(*args: str, wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    argv = [sys.executable, "-m", "ace_rl.cli", *args]
    if not wait:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=ENV)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ddpg") / "uninterrupted"
    result = command("train", *TINY, "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    return run_dir


def test_the_agent_module_is_not_part_of_the_package():
    # In a fresh interpreter (other tests of this session may have imported the module): ace_rl alone knows
    # only its own agents; ddpg is registered once its module is imported.
    check = (
        "from ace_rl.agents import registered_agents as r; before = sorted(r()); import ddpg_agent; "
        "print(before, sorted(r()))"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=ENV, timeout=120)
    assert result.stdout.split("\n")[0] == "['ace', 'sac', 'td3'] ['ace', 'ddpg', 'sac', 'td3']", result.stderr
    assert not (REPO / "ace_rl" / "ddpg_agent.py").exists()


def test_train_writes_a_ddpg_run(uninterrupted: Path):
    config = json.loads((uninterrupted / "config.json").read_text())
    assert config["algo"] == DDPG and config["reset"] == "none"  # a registered agent without resets
    assert [row["env_step"] for row in rows(uninterrupted / "metrics.csv")] == ["300", "600", "900"]
    assert rows(uninterrupted / "causal_weights.csv") == [] and rows(uninterrupted / "resets.csv") == []
    best = torch.load(uninterrupted / "checkpoints" / "best.pt", weights_only=True)
    assert best["algo"] == DDPG and "body.0.weight" in best["actor"]  # DDPG's own policy class was saved


def test_sigkill_then_resume_matches_the_uninterrupted_run(uninterrupted: Path, tmp_path: Path):
    run_dir = tmp_path / "killed"
    process = command("train", *TINY, "--run-dir", str(run_dir), wait=False)
    checkpoints = run_dir / "checkpoints"
    while len(list(checkpoints.glob("state-*.pt.sha256"))) < 2 and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    resumed = command("train", "--resume", str(run_dir), "--no-progress", "--trust-run-code")
    assert resumed.returncode == 0, resumed.stderr
    for name in ("metrics.csv", "episodes.csv"):
        kept = (
            ("env_step", "updates", "eval_return_mean") if name == "metrics.csv" else ("env_step", "return", "length")
        )
        assert [[row[c] for c in kept] for row in rows(run_dir / name)] == [
            [row[c] for c in kept] for row in rows(uninterrupted / name)
        ], name


def test_eval_and_export_load_the_agents_own_policy(uninterrupted: Path, tmp_path: Path):
    result = command("eval", str(uninterrupted), "--episodes", "2", "--trust-run-code")
    assert result.returncode == 0, result.stderr
    assert "return" in result.stdout

    onnxruntime = pytest.importorskip("onnxruntime")
    out = tmp_path / "ddpg.onnx"
    exported = command("export", str(uninterrupted), "--out", str(out), "--trust-run-code")
    assert exported.returncode == 0, exported.stderr
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(TESTS))
    import ace_rl

    policy = ace_rl.load_policy(uninterrupted, trust_run_code=True)
    observations = np.random.default_rng(0).uniform(-1, 1, size=(64, policy.observation_size)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(out))
    (from_onnx,) = session.run(None, {session.get_inputs()[0].name: observations})
    np.testing.assert_allclose(from_onnx, policy.predict(observations), atol=1e-5)
    # DDPG's formula by hand: tanh MLP rescaled to the example task's bounds [-2, 2] x [-0.5, 1.5].
    weights = {name: value.numpy() for name, value in policy.actor.state_dict().items()}
    hidden = np.maximum(observations @ weights["body.0.weight"].T + weights["body.0.bias"], 0)
    hidden = np.maximum(hidden @ weights["body.2.weight"].T + weights["body.2.bias"], 0)
    squashed = np.tanh(hidden @ weights["body.4.weight"].T + weights["body.4.bias"])
    np.testing.assert_allclose(from_onnx, squashed * [2.0, 1.0] + [0.0, 0.5], atol=1e-5)


def test_a_sweep_and_a_report_with_the_new_agent(tmp_path: Path):
    pytest.importorskip("ray")
    pytest.importorskip("rliable")
    sweep = tmp_path / "sweep"
    result = command(
        "sweep",
        "--out",
        str(sweep),
        "--env",
        POINT,
        "--algo",
        DDPG,
        "sac",
        "--seed",
        "0-1",
        "--preset",
        "small",
        "--total-steps",
        "300",
        "--start-steps",
        "100",
        "--batch-size",
        "64",
        "--hidden-size",
        "32",
        "--eval-every",
        "150",
        "--eval-episodes",
        "1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(json.loads(path.read_text())["algo"] for path in sweep.glob("*/config.json")) == [
        DDPG,
        DDPG,
        "sac",
        "sac",
    ]

    report = command("report", str(sweep), "--out", str(tmp_path / "report"), "--reps", "20")
    assert report.returncode == 0, report.stderr
    summary = rows(tmp_path / "report" / "summary.csv")
    assert {(row["task"], row["group"]) for row in summary if row["section"] == "task"} == {
        (POINT, DDPG),
        (POINT, "sac"),
    }
    assert not list((tmp_path / "report").glob("causal_weights__*"))  # neither agent fits causal weights


def test_a_module_that_registers_no_such_agent_is_one_line(tmp_path: Path):
    result = command("train", "--env", POINT, "--algo", "ddpg_agent:td4", "--run-dir", str(tmp_path / "run"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "ace-rl: error: --algo ddpg_agent:td4: module 'ddpg_agent' registered no agent 'td4' "
        "(ace_rl.agents.register_agent); it registers ddpg"
    ]
    assert not (tmp_path / "run").exists()


def test_an_algo_is_looked_up_among_its_modules_agents(tmp_path: Path):
    """--algo MODULE:NAME names NAME as MODULE registered it: `os:td3` is not the built-in TD3."""
    result = command("train", "--env", POINT, "--algo", "os:td3", "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "ace-rl: error: --algo os:td3: module 'os' registered no agent 'td3' (ace_rl.agents.register_agent); it "
        "registers none; 'td3' is registered by ace_rl.agents"
    ]
    assert not (tmp_path / "run").exists()
    from ace_rl.agents import agent_spec

    assert agent_spec("ace_rl.agents:td3") is agent_spec("td3")


def test_a_worker_that_cannot_import_the_task_module_refuses_the_sweep_in_one_line_before_any_run(tmp_path: Path):
    """The planning process imports tests/driver_only_env.py; Ray's worker processes cannot (as on a node without
    the task's dependency): the sweep's import check on the node refuses it in one line naming the node, the module
    and its error, before any run starts (no run is recorded as failed: nothing is written)."""
    pytest.importorskip("ray")
    sweep = tmp_path / "sweep"
    result = command(
        "sweep",
        "--out",
        str(sweep),
        "--env",
        "driver_only_env:DriverOnlyReach-v0",
        "--algo",
        "sac",
        "--seed",
        "0",
        "--preset",
        "small",
        "--total-steps",
        "200",
        "--start-steps",
        "100",
        "--batch-size",
        "64",
        "--hidden-size",
        "32",
        "--eval-every",
        "100",
        "--eval-episodes",
        "1",
    )
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("ace-rl: error: module driver_only_env does not import on node "), line
    assert "robot_sdk" in line and "nothing ran" in line, line
    assert not sweep.exists()
