"""ace-rl as a library (issue 17): any Gymnasium environment (module:Id, constructor arguments, factories), the
Python API (train from a thread, load, predict, evaluate, resume) and exported policies, checked with onnxruntime
and TorchScript themselves and against the action formula written out here in NumPy."""

from __future__ import annotations

import ast
import csv
import dataclasses
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import ace_rl
from ace_rl.checkpoint import load_training_state
from ace_rl.cli import main
from ace_rl.config import ConfigError, load_run_config
from ace_rl.trust import CodeTrust
from learned import assert_learned
from test_run_safety import assert_one_line_error

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
for path in (str(REPO), str(TESTS)):  # examples/ and misbehaving_envs, as the subprocesses see them
    if path not in sys.path:
        sys.path.insert(0, path)

from examples.point_reach import FORCE_HIGH, FORCE_LOW, PointReach  # noqa: E402

POINT = "examples.point_reach:PointReach-v0"
GOAL = [0.5, -0.3]
TINY = [
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
    "--log-every",
    "100",
    "--threads",
    "1",
    "--no-progress",
]
SUBPROCESS_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")]),
}


def ace_rl_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ace_rl.cli", *args], capture_output=True, text=True, timeout=900, env=SUBPROCESS_ENV
    )


def reach_factory() -> gym.Env:
    """An importable factory (this test module's own), so that the run can be rebuilt by name."""
    return gym.wrappers.TimeLimit(PointReach(goal=(0.2, 0.1)), max_episode_steps=50)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One tiny run per algorithm on the example task through module:Id and --env-kwargs."""
    root = tmp_path_factory.mktemp("library")
    made = {}
    for algo in ("ace", "sac", "td3"):
        run_dir = root / algo
        result = ace_rl_command(
            "train",
            "--env",
            POINT,
            "--env-kwargs",
            json.dumps({"goal": GOAL}),
            "--algo",
            algo,
            *TINY,
            "--run-dir",
            str(run_dir),
        )
        assert result.returncode == 0, result.stderr
        made[algo] = run_dir
    return made


def test_module_id_and_constructor_arguments_reach_the_environment(runs: dict[str, Path]):
    config = json.loads((runs["ace"] / "config.json").read_text())
    assert config["env"] == POINT and config["env_kwargs"] == {"goal": GOAL}
    state, _, _ = load_training_state(runs["ace"])
    observations = state["replay"]["obs"].numpy()
    # PointReach observes (x, y, vx, vy, goal_x, goal_y): every stored observation carries the given goal
    assert len(observations) == 300 and np.allclose(observations[:, 4:], GOAL)

    evaluated = ace_rl_command("eval", str(runs["ace"]), "--episodes", "2", "--trust-run-code")  # the module's code
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.startswith(f"{POINT} best: return ")

    resumed = ace_rl_command("train", "--resume", str(runs["ace"]), "--total-steps", "450", "--env", POINT)
    assert resumed.returncode == 0, resumed.stderr
    steps = [int(line.split(",")[0]) for line in (runs["ace"] / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [150, 300, 450]


def test_gymnasium_import_on_make_form_trains(tmp_path: Path):
    result = ace_rl_command(
        "train",
        "--env",
        "gymnasium.envs.classic_control:MountainCarContinuous-v0",
        *TINY,
        "--total-steps",
        "150",
        "--run-dir",
        str(tmp_path / "car"),
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "car" / "checkpoints" / "final.pt").is_file()
    assert_learned(tmp_path / "car", load_run_config(tmp_path / "car", CodeTrust.given(trust_run_code=True)))


@pytest.mark.parametrize(
    ("env", "env_kwargs", "fragment"),
    [
        ("CartPole-v1", None, "has Discrete actions"),
        ("misbehaving_envs:UnboundedActions-v0", None, "has unbounded actions"),
        ("misbehaving_envs:DiscreteObservations-v0", None, "has Discrete observations"),
        ("misbehaving_envs:NanFirstObservation-v0", None, "the observation after reset is not finite"),
        (
            "misbehaving_envs:OldGymStep-v0",
            None,
            "step(action) failed (ValueError: not enough values to unpack (expected 5, got 4))",
        ),
        ("no_such_module_of_envs:Robot-v0", None, "module 'no_such_module_of_envs' does not import"),
        ("misbehaving_envs:NotRegistered-v0", None, "neither registers an environment 'NotRegistered-v0'"),
        ("misbehaving_envs:StrictConstructor-v0", {"size": 4}, 'rejects the constructor arguments {"size": 4}'),
        ("Pendulum-v1", {"gravity_typo": 9.8}, "rejects the constructor arguments"),
        ("dmc:walker-run", {"size": 4}, "takes none"),
    ],
)
def test_a_bad_environment_is_one_line_and_writes_nothing(tmp_path: Path, capsys, env, env_kwargs, fragment):
    if env.startswith("dmc:"):
        pytest.importorskip("dm_control")
    run_dir = tmp_path / "run"
    kwargs = ["--env-kwargs", json.dumps(env_kwargs)] if env_kwargs is not None else []
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--env", env, *kwargs, *TINY, "--run-dir", str(run_dir)])
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, fragment)
    assert not run_dir.exists()


def test_env_kwargs_must_be_a_json_object(tmp_path: Path):
    result = ace_rl_command("train", "--env", POINT, "--env-kwargs", "[1, 2]", *TINY, "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2 and "a JSON object is expected" in result.stderr
    assert not (tmp_path / "r").exists()


def test_importing_ace_rl_only_defines_names():
    code = (
        "import os, sys, threading\n"
        "hook, environ = threading.excepthook, dict(os.environ)\n"
        "import ace_rl\n"
        "heavy = [name for name in ('torch', 'gymnasium', 'numpy', 'sklearn', 'tensorboard') if name in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert threading.excepthook is hook and dict(os.environ) == environ\n"
        "assert callable(ace_rl.train) and callable(ace_rl.evaluate) and callable(ace_rl.load_policy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_python_api_from_a_thread_with_a_factory(tmp_path: Path, monkeypatch):
    settings = dict(
        preset="small",
        total_steps=300,
        start_steps=100,
        batch_size=64,
        hidden_size=32,
        eval_every=150,
        eval_episodes=1,
        threads=1,
        progress=False,
    )
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["run"] = ace_rl.train(env=lambda: reach_factory(), run_dir=str(tmp_path / "lambda"), **settings)
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            outcome["error"] = error

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=900)
    assert "error" not in outcome, outcome.get("error")
    run = outcome["run"]
    assert run.run_dir == tmp_path / "lambda"
    assert [row["env_step"] for row in run.metrics()] == [150.0, 300.0]

    policy = ace_rl.load_policy(str(run.run_dir))
    single = policy.predict(np.zeros(6, dtype=np.float32))
    batch = policy.predict(np.zeros((5, 6), dtype=np.float32))
    assert single.shape == (2,) and batch.shape == (5, 2) and np.allclose(batch, single)
    assert np.all(batch >= FORCE_LOW) and np.all(batch <= FORCE_HIGH)

    # A lambda cannot be rebuilt by name: the command says so in one line, the API takes the factory again.
    evaluated = ace_rl_command("eval", str(run.run_dir))
    assert evaluated.returncode == 2
    assert_one_line_error(evaluated.stderr, "comes from a factory that cannot be imported")
    evaluation = ace_rl.evaluate(policy, env=reach_factory, episodes=2)
    assert evaluation.returns.shape == (2,) and np.isfinite(evaluation.mean)
    resumed = ace_rl.resume(run.run_dir, env=lambda: reach_factory(), total_steps=450)
    assert [row["env_step"] for row in resumed.metrics()] == [150.0, 300.0, 450.0]

    # An importable factory is recorded by name and rebuilt by the command itself; the caller's config is untouched
    # (the default run directory, runs/..., is made in the working directory).
    monkeypatch.chdir(tmp_path)
    config = ace_rl.preset_config(
        "small", env="test_library:reach_factory", **{key: value for key, value in settings.items() if key != "preset"}
    )
    given = dataclasses.replace(config)
    named = ace_rl.train(config)
    assert config == given and config.run_dir is None
    assert named.run_dir.parent == Path("runs") and named.config.env == "test_library:reach_factory"
    evaluated = ace_rl_command("eval", str(tmp_path / named.run_dir), "--episodes", "1", "--trust-run-code")
    assert evaluated.returncode == 0, evaluated.stderr
    # A whole configuration naming a run to resume continues it when it is that run's (this one is done); another
    # experiment is refused as `--resume` refuses it. The run's module id, given again, is trusted.
    with pytest.raises(ConfigError, match="already reached 300 env steps"):
        ace_rl.train(dataclasses.replace(named.config, resume=named.run_dir))
    with pytest.raises(ConfigError, match="--batch-size 32 contradicts the resumed run's batch_size = 64"):
        ace_rl.train(dataclasses.replace(named.config, resume=named.run_dir, batch_size=32))
    with pytest.raises(ConfigError, match="already reached 300 env steps"):
        ace_rl.resume(named.run_dir, env="test_library:reach_factory")


def test_predict_takes_dict_observations_as_the_environment_returns_them(tmp_path: Path):
    run = ace_rl.train(
        env=POINT,
        env_kwargs={"dict_observations": True},
        preset="small",
        total_steps=200,
        start_steps=100,
        batch_size=64,
        hidden_size=32,
        eval_every=200,
        eval_episodes=1,
        threads=1,
        progress=False,
        run_dir=tmp_path / "dict",
    )
    policy = run.policy()
    env = gym.make(POINT, dict_observations=True)
    observation, _ = env.reset(seed=3)
    flat = np.concatenate([observation["observation"], observation["desired_goal"]])  # ace_rl.envs.GoalObservation
    assert np.array_equal(policy.predict(observation), policy.predict(flat))
    batch = {key: np.stack([value, value]) for key, value in observation.items()}
    # a batch goes through other matrix kernels than one observation: equal to float32 rounding
    assert np.allclose(policy.predict(batch), np.stack([policy.predict(flat)] * 2), rtol=0, atol=1e-6)


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def action_by_hand(weights: dict[str, torch.Tensor], algo: str, observations: np.ndarray) -> np.ndarray:
    """The deterministic action written out in NumPy: ELU, two ReLU layers, the mean (or TD3's output) layer,
    tanh, then low + (tanh + 1) / 2 * (high - low) with the bounds of PointReach (not [-1, 1])."""
    w = {name: value.double().numpy() for name, value in weights.items()}
    features = _elu(observations @ w["hidden.0.weight"].T + w["hidden.0.bias"])
    for layer in (1, 2):
        features = np.maximum(features @ w[f"hidden.{layer}.weight"].T + w[f"hidden.{layer}.bias"], 0.0)
    head = "output" if algo == "td3" else "mean"
    squashed = np.tanh(features @ w[f"{head}.weight"].T + w[f"{head}.bias"])
    return FORCE_LOW + (squashed + 1.0) / 2.0 * (FORCE_HIGH - FORCE_LOW)


@pytest.mark.parametrize("algo", ["ace", "sac", "td3"])
def test_exported_policies_equal_predict_and_the_formula(runs: dict[str, Path], tmp_path: Path, algo: str):
    onnxruntime = pytest.importorskip("onnxruntime")
    run_dir = runs[algo]
    onnx_file, torchscript_file = tmp_path / "policy.onnx", tmp_path / "policy.pt"
    for path, form in ((onnx_file, "onnx"), (torchscript_file, "torchscript")):
        result = ace_rl_command("export", str(run_dir), "--format", form, "--out", str(path))
        assert result.returncode == 0, result.stderr
        assert f"{form} policy written to {path}: checked on 1000 observations" in result.stdout

    # Observations of the run's own task, visited with random forces.
    env = PointReach(goal=GOAL)
    observation, _ = env.reset(seed=7)
    observations = []
    for step in range(1000):
        observations.append(observation)
        observation, *_ = env.step(env.action_space.sample())
        if step % 100 == 99:
            observation, _ = env.reset()
    observations = np.stack(observations).astype(np.float32)

    policy = ace_rl.load_policy(run_dir)
    predicted = policy.predict(observations)
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    from_onnx = session.run(None, {session.get_inputs()[0].name: observations})[0]
    from_torchscript = torch.jit.load(str(torchscript_file))(torch.from_numpy(observations)).detach().numpy()
    assert np.max(np.abs(from_onnx - predicted)) < 1e-5
    assert np.max(np.abs(from_torchscript - predicted)) < 1e-5
    weights = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["actor"]
    assert np.max(np.abs(action_by_hand(weights, algo, observations.astype(np.float64)) - from_onnx)) < 1e-5
    assert np.all(from_onnx >= FORCE_LOW - 1e-6) and np.all(from_onnx <= FORCE_HIGH + 1e-6)


def test_export_refuses_an_unwritable_destination_and_a_missing_run(runs: dict[str, Path], tmp_path: Path):
    under_a_file = tmp_path / "afile"
    under_a_file.write_text("")
    result = ace_rl_command("export", str(runs["sac"]), "--format", "torchscript", "--out", str(under_a_file / "p.pt"))
    assert result.returncode == 1
    assert_one_line_error(result.stderr, str(under_a_file / "p.pt"))
    result = ace_rl_command("export", str(tmp_path / "nothing"), "--out", str(tmp_path / "p.onnx"))
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "no run directory or policy file")
    assert not (tmp_path / "p.onnx").exists()


@pytest.mark.parametrize(
    "args",
    [["--help"], ["report", "--help"], ["export", "--help"], ["train", "--help"], ["sweep", "--status", "nowhere"]],
)
def test_commands_that_do_not_train_do_not_import_torch(args: list[str]):
    code = (
        "import sys, atexit\n"
        "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules))\n"
        "from ace_rl.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert "torch imported: False" in result.stdout, result.stdout + result.stderr


def test_the_command_line_imports_no_module_behind_the_api():
    """One front door: cli.py reaches training, evaluation and policy files only through ace_rl.api."""
    from ace_rl import cli

    imported: set[str] = set()
    for node in ast.walk(ast.parse(Path(cli.__file__).read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    behind = {"trainer", "loop_parts", "evaluation", "policy", "checkpoint", "video", "export"}
    assert "ace_rl.api" in imported
    assert not imported & {f"ace_rl.{module}" for module in behind}, sorted(imported)


def test_train_eval_and_export_commands_call_the_api(tmp_path: Path, monkeypatch, capsys):
    """What each command does is the API's call with its parsed options; the command prints the result."""
    from ace_rl import api
    from ace_rl.config import TrainConfig
    from ace_rl.evaluation import Evaluation
    from ace_rl.export import ExportReport

    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(
        api, "train", lambda config, callbacks: calls.append(("train", config)) or api.Run(tmp_path, config)
    )
    main(["train", "--env", "Pendulum-v1", "--preset", "small", "--seed", "3", "--run-dir", str(tmp_path / "r")])
    (name, config), *_ = calls
    assert name == "train" and isinstance(config, TrainConfig)
    assert (config.env, config.seed, config.run_dir, config.hidden_size) == ("Pendulum-v1", 3, tmp_path / "r", 256)
    assert capsys.readouterr().out == f"run written to {tmp_path}\n"

    class Loaded:
        env_id = "Pendulum-v1"

    def load_policy(source: Path, checkpoint: str, trust_run_code: bool) -> Loaded:
        calls.append(("load_policy", (source, checkpoint, trust_run_code)))
        return Loaded()

    def evaluate(policy: Loaded, **options: object) -> Evaluation:
        calls.append(("evaluate", options))
        return Evaluation(np.array([1.0, 3.0]), None)

    monkeypatch.setattr(api, "load_policy", load_policy)
    monkeypatch.setattr(api, "evaluate", evaluate)
    main(["eval", str(tmp_path), "--checkpoint", "final", "--episodes", "2", "--seed", "7", "--trust-run-code"])
    assert calls[1:] == [
        ("load_policy", (tmp_path, "final", True)),
        ("evaluate", {"episodes": 2, "seed": 7, "video": None}),
    ]
    assert capsys.readouterr().out == "Pendulum-v1 final: return 2.00 +- 1.00 over 2 episodes\n"

    def export(*arguments: object, **options: object) -> ExportReport:
        calls.append(("export", (arguments, options)))
        return ExportReport(tmp_path / "p.pt", "torchscript", 10, 0.0)

    monkeypatch.setattr(api, "export", export)
    main(["export", str(tmp_path), "--out", str(tmp_path / "p.pt"), "--format", "torchscript", "--flat"])
    assert calls[-1] == (
        "export",
        ((tmp_path, tmp_path / "p.pt", "torchscript", "best"), {"flat": True, "trust_run_code": False}),
    )
    assert capsys.readouterr().out.startswith(f"torchscript policy written to {tmp_path / 'p.pt'}: checked on 10 ")


def test_a_sweep_over_constructor_arguments_and_its_report(tmp_path: Path):
    pytest.importorskip("ray")
    pytest.importorskip("rliable")
    sweep = tmp_path / "sweep"
    goals = [json.dumps({"goal": GOAL}), json.dumps({"goal": [-0.5, 0.3]})]
    result = ace_rl_command(
        "sweep",
        "--out",
        str(sweep),
        "--env",
        POINT,
        "--algo",
        "sac",
        "--seed",
        "0-1",
        "--env-kwargs",
        *goals,
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
    assert result.returncode == 0, result.stdout + result.stderr
    configs = [json.loads(path.read_text()) for path in sorted(sweep.glob("*/config.json"))]
    assert sorted(json.dumps(config["env_kwargs"]) for config in configs) == sorted(goals * 2)
    assert {config["env"] for config in configs} == {POINT}

    report = ace_rl_command("report", str(sweep), "--out", str(tmp_path / "report"), "--reps", "20")
    assert report.returncode == 0, report.stderr
    with open(tmp_path / "report" / "summary.csv", newline="") as file:
        rows = list(csv.reader(file))[1:]
    groups = {(row[1], row[2]) for row in rows if row[0] == "task"}
    assert groups == {(POINT, "sac env_kwargs={'goal': [0.5, -0.3]}"), (POINT, "sac env_kwargs={'goal': [-0.5, 0.3]}")}
