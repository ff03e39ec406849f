"""Exported policies that cannot be fed wrongly (issue 29 item 1), and policies trained from a factory (item 2).

A Dict task's ONNX file takes the environment's dict as it is: run by examples/deploy_onnx.py in a virtual
environment of its own that holds only onnxruntime, NumPy and Gymnasium (no PyTorch, no ace-rl), on the example
environment's own dict observations and seeded as ace-rl's evaluation seeds, it gives the returns `ace-rl eval`
gives. The virtual environment is made once per machine under ~/.cache/ace-rl-tests (ACE_RL_TEST_CACHE)."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import ace_rl

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # examples/
    sys.path.insert(0, str(REPO))

from examples.point_reach import FORCE_HIGH, FORCE_LOW, PointReach  # noqa: E402

POINT = "examples.point_reach:PointReach-v0"
TINY = dict(
    preset="small",
    total_steps=400,
    start_steps=100,
    batch_size=64,
    hidden_size=32,
    eval_every=200,
    eval_episodes=1,
    threads=1,
    progress=False,
)
CACHE = Path(os.environ.get("ACE_RL_TEST_CACHE", Path.home() / ".cache" / "ace-rl-tests"))
SUBPROCESS_ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def deployment_requirements() -> list[str]:
    """onnxruntime, NumPy and Gymnasium at the versions ace-rl runs with here, so that the environment draws the same
    numbers on both sides."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in ("onnxruntime", "numpy", "gymnasium")]


@pytest.fixture(scope="session")
def deployment_python() -> Path:
    """The Python of a virtual environment with only the deployment requirements, made once and kept in CACHE."""
    pytest.importorskip("onnxruntime")
    requirements = deployment_requirements()
    key = hashlib.sha256(json.dumps([sys.version, requirements]).encode()).hexdigest()[:12]
    venv = CACHE / f"deploy-venv-{key}"
    python = venv / "bin" / "python"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"deploy-venv-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one maker at a time (pytest-xdist workers, two test runs)
        if not (venv / "ready").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
            installed = subprocess.run(
                [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *requirements],
                capture_output=True,
                text=True,
                timeout=900,
            )
            if installed.returncode != 0:
                tail = (installed.stderr or installed.stdout).strip().splitlines()[-1:]
                pytest.skip(f"pip could not install {' '.join(requirements)} into a fresh venv: {tail}")
            (venv / "ready").write_text("\n".join(requirements) + "\n")
    return python


def ace_rl_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ace_rl.cli", *args], capture_output=True, text=True, timeout=900, env=SUBPROCESS_ENV
    )


@pytest.fixture(scope="module")
def dict_run(tmp_path_factory) -> Path:
    run = ace_rl.train(
        env=POINT,
        env_kwargs={"dict_observations": True},
        run_dir=tmp_path_factory.mktemp("deploy") / "reach",
        **TINY,
    )
    return run.run_dir


def test_an_onnx_file_runs_the_environments_dicts_alone_with_the_returns_of_ace_rl_eval(
    dict_run: Path, deployment_python: Path, tmp_path: Path
):
    onnx_file = tmp_path / "reach.onnx"
    exported = ace_rl_command("export", str(dict_run), "--out", str(onnx_file), "--trust-run-code")
    assert exported.returncode == 0, exported.stderr
    assert "inputs observation, desired_goal" in exported.stdout

    # Nothing but onnxruntime, NumPy and Gymnasium: no PyTorch, no ace-rl.
    clean_env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    probe = subprocess.run(
        [
            str(deployment_python),
            "-c",
            "import importlib.util as u; print([m for m in ('torch', 'ace_rl', 'onnx') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        env=clean_env,
        cwd=tmp_path,
    )
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr
    episodes, seed = 5, 11
    deployed = subprocess.run(
        [
            str(deployment_python),
            str(REPO / "examples" / "deploy_onnx.py"),
            str(onnx_file),
            "--env-module",
            str(REPO / "examples" / "point_reach.py"),
            "--episodes",
            str(episodes),
            "--seed",
            str(seed),
        ],
        capture_output=True,
        text=True,
        env=clean_env,
        cwd=tmp_path,
        timeout=600,
    )
    assert deployed.returncode == 0, deployed.stderr
    returns = np.array(json.loads(deployed.stdout)["returns"])

    evaluated = ace_rl_command(
        "eval", str(dict_run), "--episodes", str(episodes), "--seed", str(seed), "--trust-run-code"
    )
    assert evaluated.returncode == 0, evaluated.stderr
    printed = re.search(r"return (\S+) \+- (\S+)", evaluated.stdout)
    assert printed is not None, evaluated.stdout
    assert (f"{returns.mean():.2f}", f"{returns.std():.2f}") == printed.groups()
    # Episode by episode: onnxruntime's float32 kernels round differently from PyTorch's (about 1e-7 an action).
    by_api = ace_rl.evaluate(dict_run, episodes=episodes, seed=seed, trust_run_code=True).returns
    np.testing.assert_allclose(returns, by_api, rtol=1e-5, atol=1e-5)
    assert np.ptp(returns) > 1e-3  # episodes from different starts: the seeding is not trivially the same


def test_exported_files_take_the_dict_leaf_by_leaf_and_say_what_they_need(dict_run: Path, tmp_path: Path):
    onnxruntime = pytest.importorskip("onnxruntime")
    policy = ace_rl.load_policy(dict_run, trust_run_code=True)
    env = PointReach(dict_observations=True)
    observation, _ = env.reset(seed=5)
    observations = []
    for _ in range(200):
        observations.append(observation)
        observation, *_ = env.step(env.action_space.sample())
    batch = {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}
    by_hand = np.concatenate([batch["observation"], batch["desired_goal"]], axis=1)  # training's order
    predicted = policy.predict(by_hand)

    report = policy.export(tmp_path / "reach.onnx")
    assert report.inputs == ("observation", "desired_goal")
    session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    assert [(item.name, item.shape) for item in session.get_inputs()] == [
        ("observation", ["batch", 4]),
        ("desired_goal", ["batch", 2]),
    ]
    feed = {item.name: batch[item.name] for item in session.get_inputs()}
    assert np.max(np.abs(session.run(["action"], feed)[0] - predicted)) < 1e-5
    # Gymnasium's own flatten sorts the keys (achieved_goal, desired_goal, observation): not training's order, which
    # the file's named inputs make a caller's concern no more.
    assert list(env.observation_space.spaces) == sorted(batch)
    assert gym.spaces.flatten(env.observation_space, observations[0]).size == 8 != by_hand.shape[1]

    metadata = session.get_modelmeta().custom_metadata_map
    assert metadata["ace_rl_version"] == ace_rl.__version__
    assert metadata["env"] == POINT and json.loads(metadata["env_kwargs"]) == {"dict_observations": True}
    assert json.loads(metadata["observation_keys"]) == ["observation", "desired_goal"]
    np.testing.assert_array_equal(json.loads(metadata["action_low"]), FORCE_LOW)
    np.testing.assert_array_equal(json.loads(metadata["action_high"]), FORCE_HIGH)

    scripted = policy.export(tmp_path / "reach.pt", format="torchscript")
    extra = {"ace_rl.json": ""}
    loaded = torch.jit.load(str(scripted.path), _extra_files=extra)
    assert json.loads(extra["ace_rl.json"])["observation_keys"] == metadata["observation_keys"]
    with torch.no_grad():
        actions = loaded(torch.from_numpy(batch["observation"]), torch.from_numpy(batch["desired_goal"])).numpy()
    assert np.max(np.abs(actions - predicted)) < 1e-5

    flat = policy.export(tmp_path / "flat.onnx", flat=True)
    assert flat.inputs == ("observation",)
    session = onnxruntime.InferenceSession(str(flat.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 6]
    assert np.max(np.abs(session.run(["action"], {"observation": by_hand})[0] - predicted)) < 1e-5


def reach_goal() -> gym.Env:
    return gym.wrappers.TimeLimit(PointReach(goal=(0.2, 0.1), dict_observations=True), max_episode_steps=50)


def test_a_policy_trained_from_a_lambda_exports_evaluates_and_predicts(tmp_path: Path):
    """No environment is rebuilt from the run's name (a lambda's, which cannot be): export checks on the given
    factory's observations (or on the recorded space), evaluate runs the factory, predict flattens from the file."""
    onnxruntime = pytest.importorskip("onnxruntime")
    run = ace_rl.train(env=lambda: reach_goal(), run_dir=tmp_path / "lambda", **TINY)
    policy = run.policy()
    assert "<lambda>" in policy.env_id

    report = policy.export(tmp_path / "lambda.onnx", env=reach_goal)
    assert report.observation_source == "of the given environment" and report.max_difference <= 1e-5
    drawn = policy.export(tmp_path / "drawn.onnx")  # no factory: the recorded space, not the lambda's name
    assert drawn.observation_source == "drawn from the recorded observation space"

    evaluation = ace_rl.evaluate(policy, env=reach_goal, episodes=3, seed=2)
    assert evaluation.returns.shape == (3,) and np.all(np.isfinite(evaluation.returns))
    # The same episodes by hand: seeded once, then plain resets; the policy fed the env's dicts as they are.
    env = reach_goal()
    env.reset(seed=2)
    session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    for expected in evaluation.returns:
        observation, _ = env.reset()
        total, done = 0.0, False
        while not done:
            action = policy.predict(observation)
            from_file = session.run(["action"], {key: observation[key][None] for key in report.inputs})[0][0]
            assert np.max(np.abs(from_file - action)) < 1e-5
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        assert total == pytest.approx(expected, abs=1e-9)
