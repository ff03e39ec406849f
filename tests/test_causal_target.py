"""The reward-interaction causal target (--causal-target): its math against hand-computed effects, its ground truth on
four MuJoCo tasks with distractor action dimensions, and the real command with it."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ace_rl.causal import (
    EFFECT_TEMPERATURE,
    causal_weights,
    interaction_effects,
    weights_from_effects,
)
from ace_rl.config import ConfigError, TrainConfig, validate
from ace_rl.envs import make_env, random_transitions

DISTRACTORS = 3
GROUND_TRUTH_SAMPLES = 10_000  # the paper preset's --causal-samples


def random_transitions_with_distractors(env_id: str, seed: int, count: int) -> tuple[np.ndarray, ...]:
    """``count`` random-action transitions of ``env_id`` with DISTRACTORS action dimensions the env never sees."""
    return random_transitions(make_env(env_id, distractor_actions=DISTRACTORS), count, seed)


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Swimmer-v5"])
def test_every_distractor_gets_less_weight_than_every_real_dimension(env_id: str):
    """The ground truth of issue 30: on random-action data, 5 data seeds at 10,000 samples. (The official reward
    target fails it: Swimmer's real dimensions get coefficient 0 and weights below the distractors'.)"""
    for seed in range(5):
        fit = causal_weights(
            *random_transitions_with_distractors(env_id, seed, GROUND_TRUTH_SAMPLES), target="reward-interaction"
        )
        real, distractors = fit.weights[:-DISTRACTORS], fit.weights[-DISTRACTORS:]
        assert distractors.max() < real.min(), (env_id, seed, fit.coefficients)
        assert fit.method == "interaction" and fit.note == ""


def standard_normal(rng: np.random.Generator, n: int, columns: int) -> np.ndarray:
    return rng.standard_normal((n, columns))


def test_a_linear_effect_is_its_share_of_the_reward_spread():
    # r = 3 a0 + s0 + noise(0.5): a0's part has std 3 of the reward's sqrt(9 + 1 + 0.25); a1 has none.
    rng = np.random.default_rng(0)
    n = 200_000
    states, actions = standard_normal(rng, n, 2), standard_normal(rng, n, 2)
    rewards = 3 * actions[:, 0] + states[:, 0] + 0.5 * rng.standard_normal(n)
    effects, dropped, notes = interaction_effects(states, actions, rewards)
    np.testing.assert_allclose(effects, [3 / np.sqrt(10.25), 0.0], atol=4e-3)
    assert dropped == {} and notes == []


def test_an_effect_through_the_state_is_seen_where_the_linear_coefficient_is_zero():
    # r = 2 a0 s1 + s0: a0's mean effect is 0 (the official target's b0 is 0), its part has std 2 of sqrt(5).
    rng = np.random.default_rng(1)
    n = 200_000
    states, actions = standard_normal(rng, n, 3), standard_normal(rng, n, 2)
    rewards = 2 * actions[:, 0] * states[:, 1] + states[:, 0]
    effects, _, _ = interaction_effects(states, actions, rewards)
    np.testing.assert_allclose(effects, [2 / np.sqrt(5), 0.0], atol=4e-3)
    official = causal_weights(states, actions, rewards, target="reward")
    assert abs(official.coefficients[0]) < 0.02  # what the official target sees of it


def test_an_even_effect_of_the_action_size_is_seen():
    # r = a0^2 (a0 uniform on [-1, 1], var(a^2) = 4/45) + noise(0.1): no linear effect, a0 explains nearly all.
    rng = np.random.default_rng(2)
    n = 200_000
    actions = rng.uniform(-1, 1, (n, 2))
    states = standard_normal(rng, n, 2)
    rewards = actions[:, 0] ** 2 + 0.1 * rng.standard_normal(n)
    effects, _, _ = interaction_effects(states, actions, rewards)
    share = np.sqrt(4 / 45) / np.sqrt(4 / 45 + 0.01)
    np.testing.assert_allclose(effects, [share, 0.0], atol=4e-3)


def test_effects_do_not_depend_on_units():
    rng = np.random.default_rng(3)
    n = 5_000
    states, actions = standard_normal(rng, n, 4), standard_normal(rng, n, 3)
    rewards = actions[:, 0] * states[:, 2] + 0.3 * actions[:, 1] + states[:, 0] + rng.standard_normal(n)
    effects, _, _ = interaction_effects(states, actions, rewards)
    rescaled, _, _ = interaction_effects(
        states * [1, 100, 0.01, 5] + 7, actions * [2, 0.5, 10] - 1, 1000 * rewards - 40
    )
    np.testing.assert_allclose(rescaled, effects, rtol=1e-6, atol=1e-9)


def test_an_action_the_reward_ignores_gets_no_effect_beyond_noise():
    # With the noise allowance subtracted, an ignored action's effect is at most a few hundredths at 5,000 samples.
    rng = np.random.default_rng(4)
    n = 5_000
    states, actions = standard_normal(rng, n, 10), standard_normal(rng, n, 4)
    rewards = actions[:, 0] + states @ rng.standard_normal(10) + rng.standard_normal(n)
    effects, _, _ = interaction_effects(states, actions, rewards)
    assert effects[0] > 0.2
    assert np.all(effects[1:] < 0.03), effects


def test_weights_are_n_times_the_softmax_of_effects_over_the_temperature():
    effects = np.array([0.3, 0.05, 0.0, 0.12])
    expected = 4 * torch.softmax(torch.tensor(effects) / 0.1, dim=0).numpy()
    assert EFFECT_TEMPERATURE == 0.1
    np.testing.assert_allclose(weights_from_effects(effects), expected, rtol=1e-12)
    fit_weights = np.exp(effects / 0.1)
    np.testing.assert_allclose(weights_from_effects(effects), 4 * fit_weights / fit_weights.sum(), rtol=1e-12)


def test_a_sparse_reward_without_a_success_gives_uniform_weights():
    rng = np.random.default_rng(5)
    states, actions = standard_normal(rng, 1000, 3), standard_normal(rng, 1000, 2)
    fit = causal_weights(states, actions, np.zeros(1000), target="reward-interaction")
    np.testing.assert_array_equal(fit.weights, [1.0, 1.0])
    assert "constant" in fit.note and fit.dropped == {"reward": "constant"}


def test_a_sparse_reward_with_few_successes_gives_uniform_weights():
    # 99 successes out of 5,000 are too few to measure effects on; 100 are enough to fit.
    rng = np.random.default_rng(7)
    states, actions = standard_normal(rng, 5000, 3), standard_normal(rng, 5000, 2)
    rewards = np.zeros(5000)
    rewards[np.argsort(-actions[:, 0])[:99]] = 1.0  # the successes come with the largest a0
    fit = causal_weights(states, actions, rewards, target="reward-interaction")
    np.testing.assert_array_equal(fit.weights, [1.0, 1.0])
    assert fit.note.startswith("only 99 of 5000 samples have a reward other than 0")
    rewards[np.argsort(-actions[:, 0])[99]] = 1.0
    fit = causal_weights(states, actions, rewards, target="reward-interaction")
    assert fit.note == "" and fit.weights[0] > fit.weights[1]


def test_a_constant_action_column_gets_no_effect():
    rng = np.random.default_rng(6)
    states, actions = standard_normal(rng, 2000, 3), standard_normal(rng, 2000, 2)
    actions[:, 1] = 0.25
    rewards = actions[:, 0] + rng.standard_normal(2000)
    effects, dropped, _ = interaction_effects(states, actions, rewards)
    assert effects[1] == 0.0 and effects[0] > 0.5 and dropped == {"action[1]": "constant"}


def test_unknown_targets_and_conflicting_options_are_refused():
    with pytest.raises(ValueError, match="unknown causal target 'q'; accepted targets: reward, reward-interaction"):
        causal_weights(np.zeros((10, 2)), np.zeros((10, 1)), np.zeros(10), target="q")
    with pytest.raises(ConfigError, match="--causal-target reward-interaction fits its own regression"):
        validate(TrainConfig(causal_target="reward-interaction", causal_method="directlingam"))
    with pytest.raises(ConfigError, match="unknown --causal-target"):
        validate(TrainConfig(causal_target="q"))  # type: ignore[arg-type]


def test_a_run_with_the_target_logs_its_fits_and_resumes(tmp_path: Path):
    run_dir = tmp_path / "run"
    common = ["--env", "Hopper-v5", "--preset", "small", "--start-steps", "200", "--batch-size", "64"]
    common += ["--hidden-size", "32", "--causal-interval", "300", "--causal-samples", "300", "--eval-every", "300"]
    common += ["--eval-episodes", "1", "--threads", "1", "--no-progress", "--distractor-actions", "1"]

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "ace_rl.cli", "train", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    first = cli(*common, "--causal-target", "reward-interaction", "--total-steps", "600", "--run-dir", str(run_dir))
    assert first.returncode == 0, first.stderr
    recorded = json.loads((run_dir / "config.json").read_text())
    assert recorded["causal_target"] == "reward-interaction" and recorded["causal_method"] == "sink"
    assert (
        recorded["causal_method_reason"] == "auto: --causal-target reward-interaction fits its own regression (unused)"
    )
    assert "ace-rl: causal target reward-interaction: its own regression, not a causal method's" in first.stderr
    resumed = cli("--resume", str(run_dir), "--total-steps", "900")
    assert resumed.returncode == 0, resumed.stderr
    with open(run_dir / "causal_weights.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["env_step"] for row in rows] == ["300", "600", "900"]
    assert {row["method"] for row in rows} == {"interaction"}
    weights = np.array([[float(row[f"w{i}"]) for i in range(4)] for row in rows])
    np.testing.assert_allclose(weights.sum(axis=1), 4, atol=1e-4)
    assert np.ptp(weights, axis=1).min() > 0.01  # fitted weights, not the all-ones of no fit


def test_the_study_weight_summary_counts_fits_by_hand(tmp_path: Path):
    """benchmarks/causal_target_weights.py on a hand-made study: one arm with distractors, one without."""
    with_distractors = tmp_path / "hopper_arm" / "Hopper-v5__ace__s0"
    without = tmp_path / "cheetah_arm" / "HalfCheetah-v5__ace__s0"
    walker = tmp_path / "walker_arm" / "Walker2d-v5__ace__s0"
    for run, names, rows in (
        (
            walker,
            ["hip", "knee", "distractor0", "distractor1"],
            [[5000, 1.2, 0.8, 1.0, 0.7], [10000, 1.1, 1.05, 1.0, 0.9]],
        ),
        (
            with_distractors,
            ["thigh", "leg", "distractor0"],
            [[5000, 1.1, 1.0, 0.9], [10000, 1.0, 0.95, 1.05], [15000, 1.0, 1.0, 1.0]],
        ),
        (without, ["a", "b"], [[5000, 1.2, 0.8], [10000, 1.0, 1.0]]),
    ):
        run.mkdir(parents=True)
        (run / "actions.json").write_text(json.dumps({"names": names}))
        with open(run / "causal_weights.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["env_step", *[f"w{index}" for index in range(len(names))], "method"])
            writer.writerows([*row, "sink"] for row in rows)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "causal_target_weights.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True)
    summary = json.loads((tmp_path / "causal_weights_summary.json").read_text())
    # margins: min(1.1, 1.0) - 0.9 = 0.1 passes; 0.95 - 1.05 = -0.1; 1.0 - 1.0 = 0 does not pass
    hopper = summary["hopper_arm"]
    assert (hopper["runs"], hopper["fits"], hopper["fits_passing"]) == (1, 3, 1)
    assert hopper["median_margin"] == pytest.approx(0.0)
    assert hopper["median_real_mean"] == pytest.approx(1.0)  # 1.05, 0.975, 1.0
    assert hopper["median_distractor_mean"] == pytest.approx(1.0)  # 0.9, 1.05, 1.0
    assert hopper["median_spread"] == pytest.approx(0.1)  # 0.2, 0.1, 0
    assert hopper["share_uniform"] == pytest.approx(1 / 3)
    assert (hopper["lowest_weight"], hopper["highest_weight"]) == (pytest.approx(0.9), pytest.approx(1.1))
    assert hopper["fits_above_distractors"] == {"thigh": 1, "leg": 1}
    # highest weight: thigh (1.1), distractor0 (1.05), thigh (all equal: the first)
    assert hopper["fits_highest"] == {"thigh": 2, "distractor0": 1}
    # the knee is below distractor0 in the first fit: above every distractor in 1 of 2 fits, the hip in both
    assert summary["walker_arm"]["fits_above_distractors"] == {"hip": 2, "knee": 1}
    assert summary["walker_arm"]["fits_passing"] == 1
    cheetah = summary["cheetah_arm"]
    assert cheetah["fits_passing"] is None and cheetah["median_margin"] is None
    assert cheetah["fits_above_distractors"] is None
    assert cheetah["median_spread"] == pytest.approx(0.2)  # 0.4, 0
    assert cheetah["share_uniform"] == pytest.approx(0.5)
    # by fit step: one run per arm, so each step holds that run's fit
    assert summary["by_step"]["hopper_arm"] == {
        "5000": {
            "fits": 1,
            "fits_passing": 1,
            "median_spread": pytest.approx(0.2),
            "mean_weights": {"thigh": 1.1, "leg": 1.0, "distractor0": 0.9},
        },
        "10000": {
            "fits": 1,
            "fits_passing": 0,
            "median_spread": pytest.approx(0.1),
            "mean_weights": {"thigh": 1.0, "leg": 0.95, "distractor0": 1.05},
        },
        "15000": {
            "fits": 1,
            "fits_passing": 0,
            "median_spread": 0.0,
            "mean_weights": {"thigh": 1.0, "leg": 1.0, "distractor0": 1.0},
        },
    }
    assert summary["by_step"]["cheetah_arm"]["5000"] == {
        "fits": 1,
        "fits_passing": None,
        "median_spread": pytest.approx(0.4),
        "mean_weights": {"a": 1.2, "b": 0.8},
    }
