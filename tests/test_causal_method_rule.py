"""`--causal-method auto` (issue 30 item 2): the official DirectLiNGAM where its fits cost at most 1 % of training
time, sink above. The rule's share against arithmetic written out here, what it picks for real tasks, what a run
records in config.json and says at its start, and that old runs and sweeps keep the method they recorded."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import ace_rl
from ace_rl.causal_cost import causal_method_line, choose_causal_method, directlingam_share, seconds_per_update
from ace_rl.cli import parse_train
from ace_rl.config import ConfigError, preset_config, resumed_config
from ace_rl.networks import update_flops
from ace_rl.trainer import EnvSizes, probe_environment, with_causal_method

# The bare update on 2 CPU cores, from benchmarks/results/throughput.json ("bare_update", default path):
# GFLOP per update and updates per second at the small and the paper preset.
SMALL_GFLOP, SMALL_UPDATES_PER_SECOND = 0.8798208, 63.70
PAPER_GFLOP, PAPER_UPDATES_PER_SECOND = 27.1712256, 4.831
SECONDS_PER_PAIR_SAMPLE = 1.6e-7  # lingam.DirectLiNGAM on 2 nearly idle cores (benchmarks/results/causal_speed.json)


def hand_flops(obs: int, act: int, hidden: int, batch: int) -> float:
    """One update's matrix products, layer by layer: 2 FLOPs per multiply-add; a backward pass twice a forward
    (once when only the inputs' gradients are needed); actor, temperature and targets every 2nd update."""
    actor = sum(i * o for i, o in [(obs, hidden), (hidden, hidden), (hidden, hidden), (hidden, act), (hidden, act)])
    critic = 2 * sum(i * o for i, o in [(obs + act, hidden), (hidden, hidden), (hidden, hidden), (hidden, 1)])
    critic_step = actor + critic + critic + 2 * critic  # next action, target Q, Q forward, Q backward
    actor_step = actor + 2 * actor + critic + critic  # actor forward and backward, Q forward, Q backward to a
    return 2 * batch * (critic_step + actor_step / 2)


def hand_share(obs: int, act: int, hidden: int, batch: int, samples: int, interval: int) -> float:
    p = obs + act + 1
    fit = SECONDS_PER_PAIR_SAMPLE * samples * sum(m * (m - 1) for m in range(2, p + 1))
    flops = hand_flops(obs, act, hidden, batch)
    small_rate = SMALL_GFLOP * 1e9 * SMALL_UPDATES_PER_SECOND
    paper_rate = PAPER_GFLOP * 1e9 * PAPER_UPDATES_PER_SECOND
    if flops <= SMALL_GFLOP * 1e9:
        rate = small_rate
    elif flops >= PAPER_GFLOP * 1e9:
        rate = paper_rate
    else:
        fraction = math.log(flops / (SMALL_GFLOP * 1e9)) / math.log(PAPER_GFLOP / SMALL_GFLOP)
        rate = small_rate + fraction * (paper_rate - small_rate)
    return fit / (interval * flops / rate)


def test_the_update_count_matches_the_benchmarks_and_the_layers():
    # HalfCheetah-v5 (17 + 6) is what benchmarks/throughput.py timed.
    assert update_flops(17, 6, 256, 256) == pytest.approx(SMALL_GFLOP * 1e9, rel=1e-12)
    assert update_flops(17, 6, 1024, 512) == pytest.approx(PAPER_GFLOP * 1e9, rel=1e-12)
    assert update_flops(11, 3, 256, 256) == hand_flops(11, 3, 256, 256) == 864_092_160


# (preset, observation values, action dimensions, the share the rule should estimate, what auto picks)
CASES = [
    ("small", 4, 1, 0.00074, "directlingam"),  # InvertedPendulum-v5, 6 variables
    ("small", 11, 3, 0.0116, "sink"),  # Hopper-v5, 15 variables: just above 1 %
    ("small", 11, 6, 0.0200, "sink"),  # Hopper-v5 + 3 distractors, 18 variables
    ("small", 17, 6, 0.0469, "sink"),  # Walker2d-v5 / HalfCheetah-v5, 24 variables
    ("paper", 11, 3, 0.00087, "directlingam"),
    ("paper", 17, 6, 0.00356, "directlingam"),
    ("paper", 105, 8, 0.366, "sink"),  # Ant-v5, 114 variables
]


@pytest.mark.parametrize("preset, obs, act, share, method", CASES)
def test_the_share_of_training_time_is_the_written_formula(preset, obs, act, share, method):
    config = preset_config(preset)
    expected = hand_share(
        obs, act, config.hidden_size, config.batch_size, config.causal_samples, config.causal_interval
    )
    assert directlingam_share(config, obs, act) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(share, rel=0.02)
    choice = choose_causal_method(config, obs, act)
    assert choice.method == method
    assert choice.reason.startswith("auto: DirectLiNGAM's fits estimated at ")
    assert choice.reason.endswith("at most 1 %" if method == "directlingam" else "above 1 %")


def test_the_share_is_in_the_units_of_the_measured_updates():
    # At the benchmark's own size the update takes exactly the measured time.
    assert seconds_per_update(preset_config("small"), 17, 6) == pytest.approx(1 / SMALL_UPDATES_PER_SECOND)
    assert seconds_per_update(preset_config("paper"), 17, 6) == pytest.approx(1 / PAPER_UPDATES_PER_SECOND)
    # More updates per step: more training per fit, a smaller share.
    config = preset_config("small", updates_per_step=4)
    assert directlingam_share(config, 17, 6) == pytest.approx(directlingam_share(preset_config("small"), 17, 6) / 4)


@pytest.mark.parametrize(
    "env, preset, method",
    [
        ("InvertedPendulum-v5", "small", "directlingam"),
        ("Hopper-v5", "small", "sink"),
        ("Hopper-v5", "paper", "directlingam"),
        ("Humanoid-v5", "small", "sink"),
        ("Humanoid-v5", "paper", "sink"),
    ],
)
def test_auto_picks_by_the_real_tasks_sizes(env, preset, method):
    config = preset_config(preset, env=env, buffer_size=10_000)
    chosen = with_causal_method(config, probe_environment(config))
    assert chosen.causal_method == method and config.causal_method == "auto"
    n_variables = {"InvertedPendulum-v5": 6, "Hopper-v5": 15, "Humanoid-v5": 366}[env]
    assert f"({n_variables} variables, " in str(chosen.causal_method_reason)


def test_distractors_count_and_a_time_limit_is_respected():
    config = preset_config("small", env="InvertedPendulum-v5", distractor_actions=8, buffer_size=10_000)
    sizes = probe_environment(config)
    assert sizes == EnvSizes(4, 9) and sizes.causal_variables == 14
    assert with_causal_method(config, sizes).causal_method == "directlingam"  # 14 variables: 0.94 %
    config = preset_config("small", env="InvertedPendulum-v5", distractor_actions=9, buffer_size=10_000)
    assert with_causal_method(config, probe_environment(config)).causal_method == "sink"  # 15 variables: 1.16 %
    limited = preset_config("paper", causal_time_limit=0.5)
    choice = choose_causal_method(limited, 11, 3)  # 1.79 s estimated per fit on 10,000 samples
    assert choice.method == "sink" and "over --causal-time-limit 0.5" in choice.reason


def test_given_methods_are_kept_and_agents_without_fits_record_sink():
    for method in ("sink", "directlingam", "none"):
        config = parse_train(["--preset", "small", "--causal-method", method])
        assert choose_causal_method(config, 348, 17).method == method
        assert choose_causal_method(config, 348, 17).reason == "given"
    for algo in ("sac", "td3"):
        choice = choose_causal_method(preset_config("small", algo), 11, 3)
        assert (choice.method, choice.reason) == ("sink", f"auto: --algo {algo} fits no causal weights (unused)")
        assert causal_method_line(preset_config("small", algo), resumed=False) is None
    assert parse_train([]).causal_method == "auto"


def test_a_resumed_run_keeps_its_recorded_method():
    stored = preset_config("small", causal_method="sink")  # an old run: no reason recorded
    requested = parse_train(["--preset", "small", "--causal-method", "auto"])
    kept = resumed_config(stored, requested, {"causal_method"})
    assert (kept.causal_method, kept.causal_method_reason) == ("sink", None)
    with pytest.raises(ConfigError, match="--causal-method directlingam contradicts"):
        resumed_config(stored, preset_config("small", causal_method="directlingam"), {"causal_method"})
    line = causal_method_line(kept, resumed=True)
    assert line == "causal method sink, as the resumed run recorded it (its config.json predates --causal-method auto)"


# The small preset's networks (3 x 256, batch 256) on Hopper-v5, with a fit of 100 samples every 130 steps: the
# rule estimates DirectLiNGAM at 0.89 % of training time. Updates start at 256 stored transitions.
SCHEDULE = dict(
    start_steps=100, causal_interval=130, causal_samples=100, eval_every=130, eval_episodes=1, log_every=130
)


def methods(run_dir: Path) -> list[str]:
    with open(run_dir / "causal_weights.csv") as file:
        return [row["method"] for row in csv.DictReader(file)]


def test_a_new_run_records_its_choice_and_says_it(tmp_path: Path):
    """Through the real command."""
    options = [token for name, value in SCHEDULE.items() for token in (f"--{name.replace('_', '-')}", str(value))]
    result = subprocess.run(
        [sys.executable, "-m", "ace_rl.cli", "train", "--env", "Hopper-v5", "--preset", "small", *options,
         "--total-steps", "260", "--threads", "1", "--no-progress", "--run-dir", str(tmp_path / "new")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    recorded = json.loads((tmp_path / "new" / "config.json").read_text())
    assert recorded["causal_method"] == "directlingam"
    reason = recorded["causal_method_reason"]
    assert reason == (
        "auto: DirectLiNGAM's fits estimated at 0.89 % of training time (15 variables, 100 samples every 130 steps, "
        "3 x 256 networks, batch 256), at most 1 %"
    )
    assert f"ace-rl: causal method directlingam ({reason})" in result.stderr.splitlines()
    assert methods(tmp_path / "new") == ["directlingam", "directlingam"]


def test_a_run_from_before_auto_keeps_sink_on_resume(tmp_path: Path, capsys):
    """config.json says sink and nothing of why, as an older ace-rl wrote it; auto would take directlingam here."""
    run = ace_rl.train(
        env="Hopper-v5", preset="small", causal_method="sink", run_dir=tmp_path, total_steps=130, threads=1,
        progress=False, **SCHEDULE,
    )  # fmt: skip
    assert run.config.causal_method_reason == "given"
    assert "ace-rl: causal method sink (given)" in capsys.readouterr().err.splitlines()
    values = json.loads((tmp_path / "config.json").read_text())
    del values["causal_method_reason"]
    (tmp_path / "config.json").write_text(json.dumps(values))
    for total, method in ((200, None), (260, "auto")):  # --causal-method auto given again changes nothing either
        resumed = ace_rl.resume(tmp_path, total_steps=total, **({"causal_method": method} if method else {}))
        assert (resumed.config.causal_method, resumed.config.causal_method_reason) == ("sink", None)
        assert "ace-rl: causal method sink, as the resumed run recorded it (its config.json predates " in (
            capsys.readouterr().err
        )
    assert json.loads((tmp_path / "config.json").read_text())["causal_method_reason"] is None  # none invented
    assert methods(tmp_path) == ["sink", "sink"]


def test_a_sweep_from_when_sink_was_the_default_continues_with_sink(tmp_path: Path):
    from ace_rl.sweep import build_spec, plan_runs, spec_document
    from ace_rl.sweep.args import SweepArgs
    from ace_rl.sweep.spec import keep_recorded_causal_methods, spec_differences

    spec = build_spec(SweepArgs(env=["Hopper-v5"], algo=["ace"], seed=["0-1"]), ["--preset", "small"])
    planned = plan_runs(spec, tmp_path, parse_train)
    document = json.loads(json.dumps(spec_document(spec, planned, [])))
    assert {run["config"]["causal_method"] for run in document["runs"]} == {"auto"}
    assert spec_differences(document, spec, planned) == []
    for run in document["runs"]:
        run["config"]["causal_method"] = "sink"  # as an older ace-rl recorded it
    assert spec_differences(document, spec, planned) == ["causal_method sink in sweep.json, auto now (--causal-method)"]
    kept = keep_recorded_causal_methods(planned, {run["name"]: run["config"] for run in document["runs"]})
    assert spec_differences(document, spec, kept) == []
    for run, config in kept:
        assert config.causal_method == "sink" and run.argv[-2:] == ("--causal-method", "sink")
        assert parse_train(run.train_argv).causal_method == "sink"  # what its worker builds
