"""Ground truth for the causal weights (--distractor-actions), the uniform-weights ablation (--causal-method none)
and the action dimensions' names, through the causal fit on real MuJoCo data and through the real command."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from ace_rl import report
from ace_rl.actions import DistractorActions, action_names
from ace_rl.causal import causal_weights
from ace_rl.config import equals_sac_reason, preset_config
from ace_rl.envs import make_env, random_transitions
from ace_rl.report import figures as report_figures

TINY = [
    "--env",
    "Hopper-v5",
    "--preset",
    "small",
    "--start-steps",
    "200",
    "--batch-size",
    "64",
    "--hidden-size",
    "32",
    "--causal-interval",
    "300",
    "--causal-samples",
    "300",
    "--reset-interval",
    "200",
    "--reset-start",
    "100",
    "--eval-every",
    "300",
    "--eval-episodes",
    "1",
    "--log-every",
    "100",
    "--threads",
    "1",
    "--no-progress",
]
ZERO = 1e-9  # a distractor's coefficient: both fits drop it from the support, so it is exactly 0 in practice


def ace_rl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ace_rl.cli", *args], capture_output=True, text=True, timeout=600)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


class RecordingEnv(gym.Wrapper):
    def step(self, action):
        self.received = np.array(action)
        return super().step(action)


def test_the_environment_receives_only_the_real_dimensions():
    inner = RecordingEnv(make_env("Hopper-v5"))
    env = DistractorActions(inner, 2)
    assert env.action_space.shape == (5,)
    np.testing.assert_array_equal(env.action_space.low, [-1, -1, -1, -1, -1])
    env.reset(seed=0)
    env.step(np.array([0.1, -0.2, 0.3, 0.9, -0.9], dtype=np.float32))
    np.testing.assert_array_equal(inner.received, np.float32([0.1, -0.2, 0.3]))


@pytest.mark.parametrize(
    "env_id, names",
    [
        ("HalfCheetah-v5", ["bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"]),  # named actuators
        ("Hopper-v5", ["thigh_joint", "leg_joint", "foot_joint"]),  # unnamed motors: the joints they drive
        ("dmc:cheetah-run", ["bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"]),
        ("metaworld:reach-v3", ["x", "y", "z", "gripper"]),
        ("Pendulum-v1", ["a0"]),
    ],
)
def test_action_names(env_id: str, names: list[str]):
    if env_id.startswith("dmc:"):
        pytest.importorskip("dm_control")
    if env_id.startswith("metaworld:"):
        pytest.importorskip("metaworld")
    assert action_names(make_env(env_id, distractor_actions=2)) == [*names, "distractor0", "distractor1"]


@pytest.fixture(scope="module")
def hopper_transitions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2,000 random-action Hopper-v5 transitions, with three distractor dimensions the environment never saw."""
    return random_transitions(make_env("Hopper-v5", distractor_actions=3), 2000, 0)


@pytest.mark.parametrize("method", ["sink", "directlingam"])
def test_distractors_get_no_effect_on_real_mujoco_data(hopper_transitions, method: str):
    fit = causal_weights(*hopper_transitions, method=method)
    real, distractors = fit.coefficients[:3], fit.coefficients[3:]
    assert np.all(np.abs(distractors) <= ZERO), distractors
    assert np.any(np.abs(real) > 0.01), real  # Hopper's actions do reach its reward
    np.testing.assert_allclose(fit.weights[3:], fit.weights[3], rtol=1e-12)
    # w = |A| softmax(b), computed here from the fitted coefficients: the distractors' weight is |A| e^0 / sum e^b.
    np.testing.assert_allclose(fit.weights[3], 6 / np.exp(fit.coefficients).sum(), rtol=1e-9)


def test_equals_sac_reason_with_the_uniform_weights_ablation():
    settings = dict(total_steps=1000, causal_interval=100, causal_samples=100)
    assert equals_sac_reason(preset_config("small", "ace", causal_method="none", reset="none", **settings)) == (
        "no causal fit (--causal-method none) and --reset none"
    )
    # Fits are due (at step 100) but none is made; the resets still make it ACE.
    assert (
        equals_sac_reason(
            preset_config("small", "ace", causal_method="none", reset_interval=100, reset_start=0, **settings)
        )
        is None
    )


@pytest.fixture(scope="module")
def distractor_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("distractors") / "run"
    result = ace_rl("train", *TINY, "--distractor-actions", "2", "--total-steps", "600", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    return run_dir


def test_a_distractor_run_records_its_dimensions(distractor_run: Path):
    assert json.loads((distractor_run / "config.json").read_text())["distractor_actions"] == 2
    assert json.loads((distractor_run / "actions.json").read_text()) == {
        "names": ["thigh_joint", "leg_joint", "foot_joint", "distractor0", "distractor1"],
        "distractors": 2,
    }
    fits = rows(distractor_run / "causal_weights.csv")
    assert [row["env_step"] for row in fits] == ["300", "600"]
    assert [name for name in fits[0] if name.startswith("w")] == ["w0", "w1", "w2", "w3", "w4"]
    best = torch.load(distractor_run / "checkpoints" / "best.pt", weights_only=True)
    assert best["action_dim"] == 5 and best["distractor_actions"] == 2


def test_eval_resume_and_export_work_on_a_distractor_run(distractor_run: Path, tmp_path: Path):
    evaluated = ace_rl("eval", str(distractor_run), "--episodes", "1")
    assert evaluated.returncode == 0, evaluated.stderr
    resumed = ace_rl("train", "--resume", str(distractor_run), "--total-steps", "900", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert [row["env_step"] for row in rows(distractor_run / "causal_weights.csv")] == ["300", "600", "900"]
    exported = ace_rl("export", str(distractor_run), "--format", "torchscript", "--out", str(tmp_path / "p.pt"))
    assert exported.returncode == 0, exported.stderr
    module = torch.jit.load(str(tmp_path / "p.pt"))
    assert module(torch.zeros(4, 11)).shape == (4, 5)  # the agent's A + K outputs; the environment takes the first 3


def test_the_uniform_weights_ablation_fits_nothing_and_still_resets(tmp_path: Path):
    run_dir = tmp_path / "none"
    result = ace_rl("train", *TINY, "--causal-method", "none", "--total-steps", "600", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert rows(run_dir / "causal_weights.csv") == []
    resets = rows(run_dir / "resets.csv")
    assert [int(row["update"]) for row in resets] == [200, 400]  # updates begin at step 64: 537 updates in 600 steps


def test_a_sweep_labels_the_ablation_and_the_report_marks_the_distractors(tmp_path: Path, monkeypatch):
    pytest.importorskip("ray")
    pytest.importorskip("rliable")
    sweep = tmp_path / "sweep"
    result = ace_rl(
        "sweep",
        "--out",
        str(sweep),
        "--env",
        "Hopper-v5",
        "--algo",
        "ace",
        "--causal-method",
        "sink",
        "none",
        "--seed",
        "0",
        "--distractor-actions",
        "1",
        *TINY[2:-3],
        "--total-steps",
        "600",
    )
    assert result.returncode == 0, result.stdout + result.stderr

    legends: dict[str, list[str]] = {}
    save = report_figures._save

    def keep_legend(fig, out, stem, figures):
        legend = fig.axes[0].get_legend()
        if stem.startswith("causal_weights") and legend is not None:
            legends[stem] = [text.get_text() for text in legend.get_texts()]
        save(fig, out, stem, figures)

    monkeypatch.setattr(report_figures, "_save", keep_legend)
    report.make_report([sweep], tmp_path / "report", reps=20)
    groups = {row["group"] for row in rows(tmp_path / "report" / "summary.csv") if row["section"] == "task"}
    assert groups == {"ace causal_method=sink", "ace causal_method=none"}
    (legend,) = legends.values()  # only the group with fits has a causal-weight figure
    assert legend == ["w0 thigh_joint", "w1 leg_joint", "w2 foot_joint", "w3 distractor0 (ignored by the env)"]
