import pytest

from ace_rl.cli import parse_train
from ace_rl.config import ConfigError, preset_config, validate


def test_paper_preset_matches_the_design_defaults():
    config = preset_config("paper")
    assert (config.hidden_size, config.batch_size, config.start_steps, config.buffer_size) == (
        1024,
        512,
        10_000,
        1_000_000,
    )
    assert (config.causal_interval, config.causal_samples) == (10_000, 10_000)
    assert (config.reset, config.reset_interval, config.reset_start) == ("reset", 100_000, 5_000)
    assert (config.learning_rate, config.gamma, config.tau, config.policy_frequency) == (3e-4, 0.99, 0.005, 2)
    assert (config.total_steps, config.eval_episodes, config.updates_per_step) == (1_000_000, 10, 1)


def test_small_preset_sees_causal_fits_and_a_reset_within_50000_steps():
    config = preset_config("small")
    assert (config.hidden_size, config.batch_size) == (256, 256)
    updates_in_50k = 50_000 - config.batch_size
    assert 50_000 // config.causal_interval >= 2
    assert updates_in_50k >= config.reset_interval > config.reset_start


def test_sac_has_no_reset_and_explicit_settings_win():
    assert preset_config("small", "sac").reset == "none"
    assert preset_config("small", batch_size=64).batch_size == 64


def test_each_agent_updates_its_actor_on_its_references_schedule():
    # ACE's official code and TD3 (Fujimoto et al. 2018) update the actor on every 2nd critic update; the reference
    # SAC (Haarnoja et al. 2018, Algorithm 1) and Stable-Baselines3's SAC on every one.
    assert {algo: preset_config("small", algo).policy_frequency for algo in ("ace", "sac", "td3")} == {
        "ace": 2,
        "sac": 1,
        "td3": 2,
    }
    assert parse_train(["--algo", "sac"]).policy_frequency == 1
    assert parse_train(["--algo", "sac", "--policy-frequency", "2"]).policy_frequency == 2
    assert parse_train(["--policy-frequency", "1"]).policy_frequency == 1


def test_command_line_preset_fills_defaults_and_flags_override():
    config = parse_train(["--preset", "small", "--batch-size", "32", "--algo", "sac"])
    assert (config.preset, config.hidden_size, config.batch_size, config.reset) == ("small", 256, 32, "none")
    assert parse_train(["--preset=small"]).hidden_size == 256
    assert parse_train([]).hidden_size == 1024


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(batch_size=0), "--batch-size must be a positive integer, got 0"),
        (dict(causal_interval=-5), "--causal-interval must be a positive integer, got -5"),
        (dict(start_steps=-1), "--start-steps must be zero or a positive integer"),
        (dict(gamma=1.5), "--gamma must lie in"),
        (dict(device="tpu"), "unknown --device 'tpu'; accepted: auto, cpu, cuda, cuda:N"),
        (dict(causal_method="pc"), "unknown --causal-method 'pc'; accepted: auto, sink, directlingam, none"),
        (dict(reset="sometimes"), "unknown --reset 'sometimes'; accepted: none, reset"),
        (dict(batch_size=100, buffer_size=10), "--batch-size (100) must not exceed --buffer-size (10)"),
        (dict(warmup_updates="no"), "--warmup-updates must be true or false, got 'no'"),
    ],
)
def test_invalid_settings_are_named(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(preset_config("small", **settings))


def test_sac_with_reset_is_refused():
    with pytest.raises(ConfigError, match="--algo sac runs without resets"):
        validate(preset_config("small", "sac", reset="reset"))


def test_unknown_preset_is_named():
    with pytest.raises(ConfigError, match="unknown --preset 'huge'; accepted: paper, small"):
        preset_config("huge")
