"""Tests of the causal weights (ace_rl.causal): the math, agreement with lingam, and robustness on messy data."""

from __future__ import annotations

import re
import warnings

import lingam
import numpy as np
import pytest
from lingam.utils import predict_adaptive_lasso

from ace_rl.causal import (
    METHODS,
    CausalTimeLimitError,
    causal_weights,
    estimate_directlingam_seconds,
    prepare_data,
    reward_row,
    weights_from_coefficients,
)
from ace_rl.envs import random_transitions

ACTION_EFFECTS = np.array([2.0, 0.5, 0.0])
STATE_EFFECTS = np.array([0.8, -0.6, 0.3])


def linear_data(n: int = 3000, seed: int = 0, correlated: bool = False):
    """``r = 2 a0 + 0.5 a1 + 0 a2 + state terms + uniform noise``, every variable uniform (non-Gaussian)."""
    rng = np.random.default_rng(seed)
    states = rng.uniform(-1.0, 1.0, (n, 3))
    if correlated:
        states[:, 1] += 0.5 * states[:, 0]
        states[:, 2] -= 0.3 * states[:, 1]
    actions = rng.uniform(-1.0, 1.0, (n, 3))
    rewards = actions @ ACTION_EFFECTS + states @ STATE_EFFECTS + rng.uniform(-0.5, 0.5, n)
    return states, actions, rewards


def reference_row(x: np.ndarray) -> np.ndarray:
    """lingam's adaptive lasso of the last column on all others."""
    p = x.shape[1] - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return predict_adaptive_lasso(x, list(range(p)), p)


def fit_quietly(*args, **kwargs):
    """causal_weights, failing the test on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return causal_weights(*args, **kwargs)


def assert_valid(fit, n_actions: int) -> None:
    assert fit.weights.shape == (n_actions,) and fit.coefficients.shape == (n_actions,)
    assert fit.weights.dtype == np.float64
    assert np.all(np.isfinite(fit.weights)) and np.all(np.isfinite(fit.coefficients))
    assert fit.weights.sum() == pytest.approx(n_actions)
    assert fit.seconds >= 0.0


# --- the weights --------------------------------------------------------------------------------------------------


def test_weights_from_coefficients_is_n_times_softmax():
    # exp(b) = (1, 2, 3), softmax = (1/6, 2/6, 3/6), times n = 3
    weights = weights_from_coefficients(np.log([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(weights, [0.5, 1.0, 1.5], rtol=1e-12)
    assert weights.sum() == pytest.approx(3.0)
    np.testing.assert_allclose(weights_from_coefficients(np.zeros(4)), np.ones(4))
    # no overflow for large coefficients
    np.testing.assert_allclose(weights_from_coefficients(np.array([1000.0, 1000.0])), [1.0, 1.0])
    big = weights_from_coefficients(np.array([800.0, 0.0]))
    np.testing.assert_allclose(big, [2.0, 0.0], atol=1e-300)
    rng = np.random.default_rng(1)
    b = rng.normal(size=7)
    np.testing.assert_allclose(weights_from_coefficients(b), 7 * np.exp(b) / np.exp(b).sum(), rtol=1e-12)


# --- the sink method -----------------------------------------------------------------------------------------------


def test_sink_recovers_known_coefficients():
    states, actions, rewards = linear_data()
    fit = fit_quietly(states, actions, rewards)
    assert_valid(fit, 3)
    assert fit.method == "sink" and fit.dropped == {} and fit.note == ""
    np.testing.assert_allclose(fit.coefficients, ACTION_EFFECTS, atol=0.05)
    assert int(np.argmax(fit.weights)) == 0
    assert fit.weights[0] > fit.weights[1] > 0.0
    np.testing.assert_allclose(fit.weights, weights_from_coefficients(fit.coefficients))


@pytest.mark.parametrize("correlated", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sink_equals_predict_adaptive_lasso(seed, correlated):
    states, actions, rewards = linear_data(n=1000, seed=seed, correlated=correlated)
    x = np.column_stack([states, actions, rewards])
    expected = reference_row(x)
    data = prepare_data(states, actions, rewards)
    assert data.matrix.shape == x.shape
    row, _ = reward_row(data, "sink")
    np.testing.assert_allclose(row, expected, rtol=0, atol=1e-8)
    fit = causal_weights(states, actions, rewards)
    np.testing.assert_allclose(fit.coefficients, expected[3:], rtol=0, atol=1e-8)


def test_sink_equals_directlingam_when_reward_is_last():
    states, actions, rewards = linear_data(n=2000, seed=3)
    x = np.column_stack([states, actions, rewards])
    model = lingam.DirectLiNGAM().fit(x)
    assert model.causal_order_[-1] == x.shape[1] - 1, "test data must make DirectLiNGAM put the reward last"
    sink = fit_quietly(states, actions, rewards, method="sink")
    np.testing.assert_allclose(sink.coefficients, model.adjacency_matrix_[-1, 3:6], rtol=0, atol=1e-8)
    direct = causal_weights(states, actions, rewards, method="directlingam")
    assert direct.method == "directlingam" and direct.note == ""
    np.testing.assert_allclose(direct.coefficients, sink.coefficients, rtol=0, atol=1e-8)
    np.testing.assert_allclose(direct.weights, sink.weights, rtol=0, atol=1e-8)


def test_rewards_as_column_and_float32_inputs():
    states, actions, rewards = linear_data(n=500)
    a = causal_weights(states, actions, rewards)
    b = causal_weights(states.astype(np.float32), actions.astype(np.float32), rewards.reshape(-1, 1))
    np.testing.assert_allclose(a.coefficients, b.coefficients, atol=1e-5)


def test_recorded_hopper_transitions_match_predict_adaptive_lasso():
    gym = pytest.importorskip("gymnasium")
    states, actions, rewards = random_transitions(gym.make("Hopper-v5"), 2000, 0)

    fit = fit_quietly(states, actions, rewards)
    assert_valid(fit, 3)
    data = prepare_data(states, actions, rewards)
    expected = reference_row(data.matrix)
    row, _ = reward_row(data, "sink")
    assert np.count_nonzero(expected) > 0
    np.testing.assert_allclose(row, expected, rtol=0, atol=1e-8)
    present = data.action_columns >= 0
    np.testing.assert_allclose(fit.coefficients[present], expected[data.action_columns[present]], atol=1e-8)


# --- robustness ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_constant_columns_are_dropped(method):
    states, actions, rewards = linear_data(n=1000)
    base = causal_weights(states, actions, rewards, method=method)
    with_constant = np.column_stack([states[:, :1], np.full(1000, 3.5), states[:, 1:]])
    fit = fit_quietly(with_constant, actions, rewards, method=method)
    assert fit.dropped == {"state[1]": "constant"}
    assert "constant" in fit.note
    np.testing.assert_allclose(fit.coefficients, base.coefficients, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_constant_action_column_gets_zero_coefficient(method):
    states, actions, rewards = linear_data(n=1000)
    actions = actions.copy()
    actions[:, 0] = 0.0  # e.g. a locked actuator
    fit = fit_quietly(states, actions, rewards, method=method)
    assert_valid(fit, 3)
    assert fit.dropped == {"action[0]": "constant"}
    assert fit.coefficients[0] == 0.0
    assert fit.coefficients[1] == pytest.approx(0.5, abs=0.1)


def test_duplicate_columns_are_dropped():
    states, actions, rewards = linear_data(n=1000)
    base = causal_weights(states, actions, rewards)
    duplicated = np.column_stack([states, states[:, 0], actions[:, 1]])  # state[3] = state[0], state[4] = action[1]
    fit = fit_quietly(duplicated, actions, rewards)
    assert fit.dropped == {"state[3]": "duplicate of state[0]", "state[4]": "duplicate of action[1]"}
    np.testing.assert_allclose(fit.coefficients, base.coefficients, atol=1e-10)

    # a duplicated action: the first one is kept, the copy gets coefficient 0
    actions_dup = np.column_stack([actions, actions[:, 0]])
    fit = fit_quietly(states, actions_dup, rewards)
    assert fit.dropped == {"action[3]": "duplicate of action[0]"}
    assert_valid(fit, 4)
    assert fit.coefficients[3] == 0.0
    np.testing.assert_allclose(fit.coefficients[:3], base.coefficients, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_near_collinear_columns_are_dropped(method):
    states, actions, rewards = linear_data(n=1000)
    rng = np.random.default_rng(5)
    combination = states[:, 0] - 2.0 * states[:, 2] + 1e-7 * rng.uniform(-1, 1, 1000)
    messy = np.column_stack([states, combination, -3.0 * states[:, 1] + 1.0])
    fit = fit_quietly(messy, actions, rewards, method=method)
    assert_valid(fit, 3)
    assert set(fit.dropped) == {"state[3]", "state[4]"}
    assert all(reason.startswith("collinear") for reason in fit.dropped.values())
    data = prepare_data(messy, actions, rewards)
    assert data.names == ["state[0]", "state[1]", "state[2]", "action[0]", "action[1]", "action[2]", "reward"]
    if method == "sink":
        np.testing.assert_allclose(fit.coefficients, reference_row(data.matrix)[3:], atol=1e-8)


def test_collinear_action_is_kept_and_state_dropped():
    states, actions, rewards = linear_data(n=1000)
    messy = np.column_stack([states, 2.0 * actions[:, 2] - 1.0])
    fit = fit_quietly(messy, actions, rewards)
    assert list(fit.dropped) == ["state[3]"]
    assert fit.dropped["state[3]"].startswith("collinear")


@pytest.mark.parametrize("method", METHODS)
def test_fewer_samples_than_variables(method):
    rng = np.random.default_rng(2)
    n = 20
    states = rng.uniform(-1, 1, (n, 25))
    actions = rng.uniform(-1, 1, (n, 3))
    rewards = 2.0 * actions[:, 0] + states[:, 0] + 0.1 * rng.uniform(-1, 1, n)
    fit = fit_quietly(states, actions, rewards, method=method)
    assert_valid(fit, 3)
    assert "20 samples for 29 variables" in fit.note
    assert sum(reason.startswith("screened out") for reason in fit.dropped.values()) == 28 - 18
    assert not any(name.startswith("action") for name in fit.dropped)


@pytest.mark.parametrize("method", METHODS)
def test_very_few_samples_give_uniform_weights(method):
    fit = fit_quietly(np.ones((3, 2)), np.eye(3), np.arange(3.0), method=method)
    np.testing.assert_array_equal(fit.weights, np.ones(3))
    np.testing.assert_array_equal(fit.coefficients, np.zeros(3))
    assert "too few samples" in fit.note


@pytest.mark.parametrize("method", METHODS)
def test_constant_reward_gives_uniform_weights(method):
    states, actions, _ = linear_data(n=500)
    fit = fit_quietly(states, actions, np.zeros((500, 1)), method=method)
    np.testing.assert_array_equal(fit.weights, np.ones(3))
    np.testing.assert_array_equal(fit.coefficients, np.zeros(3))
    assert fit.dropped == {"reward": "constant"}
    assert "reward is constant" in fit.note


def test_all_predictors_constant_gives_uniform_weights():
    rng = np.random.default_rng(0)
    fit = fit_quietly(np.ones((100, 2)), np.zeros((100, 2)), rng.normal(size=100))
    np.testing.assert_array_equal(fit.weights, np.ones(2))
    assert len(fit.dropped) == 4 and fit.note


def test_reward_exact_linear_function():
    states, actions, _ = linear_data(n=500)
    rewards = 1.5 * actions[:, 1] - states[:, 0]
    fit = fit_quietly(states, actions, rewards)
    assert_valid(fit, 3)
    np.testing.assert_allclose(fit.coefficients, [0.0, 1.5, 0.0], atol=1e-9)
    assert "exact linear function" in fit.note


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("state", r"state\[4\] holds 3 non-finite values"),
        ("action", r"action\[1\] holds 1 non-finite value"),
        ("reward", r"reward holds 2 non-finite values"),
    ],
)
def test_non_finite_input_names_the_column(column, message):
    rng = np.random.default_rng(0)
    states, actions, rewards = rng.normal(size=(50, 6)), rng.normal(size=(50, 2)), rng.normal(size=50)
    if column == "state":
        states[[1, 5, 9], 4] = [np.nan, np.inf, -np.inf]
    elif column == "action":
        actions[7, 1] = np.nan
    else:
        rewards[[0, 1]] = np.nan
    with pytest.raises(ValueError, match=message):
        causal_weights(states, actions, rewards)


def test_unknown_method_lists_the_methods():
    states, actions, rewards = linear_data(n=100)
    with pytest.raises(ValueError, match=r"sink.*directlingam"):
        causal_weights(states, actions, rewards, method="pc")


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="same number of rows"):
        causal_weights(np.zeros((10, 2)), np.zeros((9, 2)), np.zeros(10))


def test_time_limit_exceeded_raises():
    rng = np.random.default_rng(0)
    states, actions, rewards = rng.uniform(size=(2000, 30)), rng.uniform(size=(2000, 4)), rng.uniform(size=2000)
    with pytest.raises(CausalTimeLimitError, match=re.escape("method='sink'")) as error:
        causal_weights(states, actions, rewards, method="directlingam", time_limit=0.01)
    assert isinstance(error.value, ValueError)
    assert "35 variables" in str(error.value)
    # the sink method ignores the limit: it fits, and as lingam's adaptive lasso does
    sink = causal_weights(states, actions, rewards, method="sink", time_limit=0.01)
    assert_valid(sink, 4)
    assert sink.method == "sink" and sink.dropped == {} and sink.note == ""
    expected = reference_row(np.column_stack([states, actions, rewards]))[30:]
    np.testing.assert_allclose(sink.coefficients, expected, rtol=0, atol=1e-8)


def test_time_limit_large_enough_runs():
    states, actions, rewards = linear_data(n=300)
    fit = causal_weights(states, actions, rewards, method="directlingam", time_limit=600.0)
    assert_valid(fit, 3)
    # A fit was made (not the all-ones weights of no fit), by DirectLiNGAM: lingam's own model of the same data,
    # and close to the effects the data were made with.
    assert fit.method == "directlingam" and fit.dropped == {} and fit.note == ""
    model = lingam.DirectLiNGAM().fit(np.column_stack([states, actions, rewards]))
    np.testing.assert_allclose(fit.coefficients, model.adjacency_matrix_[-1, 3:6], rtol=0, atol=1e-8)
    np.testing.assert_allclose(fit.coefficients, ACTION_EFFECTS, atol=0.1)
    assert fit.weights[0] > fit.weights[1] > fit.weights[2]


class FakeClock:
    """``time.perf_counter`` for ace_rl.causal, advanced only by the DirectLiNGAM fits it watches: a fit on
    ``k`` columns "takes" ``seconds_per_pair * k (k + 1) (k - 1) / 3`` seconds, so timings are deterministic."""

    def __init__(self, seconds_per_pair: float) -> None:
        self.now = 100.0
        self.seconds_per_pair = seconds_per_pair
        self.fitted_shapes: list[tuple[int, int]] = []
        self.fitted_data: list[np.ndarray] = []

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def fake_clock(monkeypatch):
    import types

    import ace_rl.causal as causal_module

    def install(seconds_per_pair: float) -> FakeClock:
        clock = FakeClock(seconds_per_pair)
        monkeypatch.setattr(causal_module, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
        real_fit = lingam.DirectLiNGAM.fit

        def timed_fit(self, x):
            k = np.shape(x)[1]
            clock.fitted_shapes.append(np.shape(x))
            clock.fitted_data.append(np.array(x))
            clock.now += seconds_per_pair * sum(m * (m - 1) for m in range(2, k + 1))
            return real_fit(self, x)

        monkeypatch.setattr(lingam.DirectLiNGAM, "fit", timed_fit)
        return clock

    return install


def near_limit_data():
    """2000 samples of 11 states, 1 action and the reward: 13 variables, 728 pairs for DirectLiNGAM to score."""
    rng = np.random.default_rng(0)
    return rng.uniform(size=(2000, 11)), rng.uniform(size=(2000, 1)), rng.uniform(size=2000)


def test_time_limit_calibrates_near_the_limit_and_refuses_on_a_slow_machine(fake_clock):
    limit = 2 * estimate_directlingam_seconds(2000, 13)  # near the constant-based estimate: calibrate
    clock = fake_clock(seconds_per_pair=3 * limit / 728)  # on this machine the full fit would take 3 x the limit
    states, actions, rewards = near_limit_data()
    with pytest.raises(CausalTimeLimitError, match="would take about") as error:
        causal_weights(states, actions, rewards, method="directlingam", time_limit=limit)
    # One calibration fit, on the last 8 of the 13 columns (all rows); the full fit never starts.
    assert clock.fitted_shapes == [(2000, 8)]
    np.testing.assert_array_equal(clock.fitted_data[0][:, -1], rewards)
    # Its 168 pairs scaled to the 728 pairs of 13 variables: the full fit's time.
    assert f"on 13 variables and 2000 samples would take about {3 * limit:.3g} s" in str(error.value)


def test_time_limit_calibrates_near_the_limit_and_runs_on_a_fast_machine(fake_clock):
    limit = 2 * estimate_directlingam_seconds(2000, 13)
    clock = fake_clock(seconds_per_pair=limit / 10 / 728)  # the full fit takes a tenth of the limit: it runs
    states, actions, rewards = near_limit_data()
    fit = causal_weights(states, actions, rewards, method="directlingam", time_limit=limit)
    assert clock.fitted_shapes == [(2000, 8), (2000, 13)]
    assert_valid(fit, 1)
    assert fit.seconds == pytest.approx(limit / 10 / 728 * (168 + 728))  # both fits fall inside the timed call


def test_time_limit_far_from_the_estimate_does_not_calibrate(fake_clock):
    clock = fake_clock(seconds_per_pair=1.0)  # calibrating would refuse any limit: it must not happen
    states, actions, rewards = near_limit_data()
    estimate = estimate_directlingam_seconds(2000, 13)
    causal_weights(states, actions, rewards, method="directlingam", time_limit=100 * estimate)
    assert clock.fitted_shapes == [(2000, 13)]  # only the fit itself
    with pytest.raises(CausalTimeLimitError, match=re.escape(f"about {estimate:.3g} s")):
        causal_weights(states, actions, rewards, method="directlingam", time_limit=estimate / 100)
    assert clock.fitted_shapes == [(2000, 13)]  # refused on the constant-based estimate, nothing fitted


def count_directlingam_pair_evaluations(n_variables: int) -> int:
    """How many (i, j) pairs lingam.DirectLiNGAM's causal-order search scores on ``n_variables`` columns."""
    calls = []
    real = lingam.DirectLiNGAM._diff_mutual_info

    def counted(self, *args):
        calls.append(1)
        return real(self, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lingam.DirectLiNGAM, "_diff_mutual_info", counted)
        lingam.DirectLiNGAM().fit(np.random.default_rng(n_variables).uniform(size=(200, n_variables)))
    return len(calls)


def test_directlingam_time_estimate_grows_with_the_cube(fake_clock):
    # The estimate follows the work DirectLiNGAM really does: the pairs its causal-order search scores.
    pairs = {p: count_directlingam_pair_evaluations(p) for p in (1, 2, 4, 7)}
    assert pairs[1] == 0 and estimate_directlingam_seconds(10_000, 1) == 0.0
    for p, q in ((2, 4), (4, 7), (2, 7)):
        ratio = estimate_directlingam_seconds(10_000, q) / estimate_directlingam_seconds(10_000, p)
        assert ratio == pytest.approx(pairs[q] / pairs[p])
    # Each pair costs a pass over the samples: linear in the number of samples.
    assert estimate_directlingam_seconds(20_000, 15) == pytest.approx(2 * estimate_directlingam_seconds(10_000, 15))
    # For many variables the number of pairs, and so the estimate, grows with the cube.
    assert estimate_directlingam_seconds(10_000, 400) / estimate_directlingam_seconds(10_000, 200) == pytest.approx(
        8.0, rel=0.01
    )
    # Calibrated on a data matrix: the timed fit on its last 8 columns, scaled by pairs and samples.
    clock = fake_clock(seconds_per_pair=0.002)
    x = np.random.default_rng(0).uniform(size=(300, 12))
    calibrated = estimate_directlingam_seconds(600, 12, calibrate_on=x)
    assert clock.fitted_shapes == [(300, 8)]
    np.testing.assert_array_equal(clock.fitted_data[0], x[:, 4:])  # the last 8 columns: the actions and the reward
    assert calibrated == pytest.approx(0.002 * pairs_of(8) * (600 / 300) * pairs_of(12) / pairs_of(8))


def pairs_of(n_variables: int) -> int:
    return sum(m * (m - 1) for m in range(2, n_variables + 1))
