"""An ACE run whose budget allows no causal fit and no reset is SAC bit for bit: ace-rl says so (issue 16.10).

The boundaries are computed here by hand from the loop's rules (a fit at every multiple of --causal-interval once
the replay holds --causal-samples transitions; an update on every step once it holds a batch; a reset at every
multiple of --reset-interval beyond --reset-start) and checked against what the real loop writes."""

import csv
from pathlib import Path

import pytest
import torch

from ace_rl.config import equal_sac_flags, equals_sac_reason, preset_config
from test_end_to_end import ace_rl

# Pendulum needs no MuJoCo; a 32-wide network and 64-transition batches keep the runs to seconds.
TINY = [
    "--env",
    "Pendulum-v1",
    "--preset",
    "small",
    "--start-steps",
    "100",
    "--batch-size",
    "64",
    "--hidden-size",
    "32",
    "--eval-episodes",
    "1",
    "--log-every",
    "100",
    "--threads",
    "1",
    "--no-progress",
    "--seed",
    "5",
]
NOTE = "computes exactly what --algo sac"


def small(**settings):
    return preset_config("small", **settings)


def test_the_issue_example_is_named_with_its_numbers():
    # small preset: a fit is due at 5,000 steps, a reset at update 20,000; 4,000 steps make 4,000 - 256 + 1 updates
    reason = equals_sac_reason(small(total_steps=4_000))
    assert reason is not None
    assert "env step 5,000" in reason and "--total-steps is 4,000" in reason
    assert "update 20,000" in reason and "makes 3,745" in reason


@pytest.mark.parametrize(
    ("settings", "equal"),
    [
        (dict(total_steps=5_000), False),  # the first fit falls on the last step, before its update
        (dict(total_steps=5_999, causal_interval=3_000), True),  # 5,000 samples: first fit at 6,000
        (dict(total_steps=6_000, causal_interval=3_000), False),
        # no fit (10,000 samples); reset every 100 updates beyond 250: first at update 300 = total - 63
        (dict(total_steps=362, batch_size=64, causal_samples=10_000, reset_interval=100, reset_start=250), True),
        (dict(total_steps=363, batch_size=64, causal_samples=10_000, reset_interval=100, reset_start=250), False),
        # two updates a step: 2 * (212 - 63) = 298 updates, 2 * (213 - 63) = 300
        (
            dict(
                total_steps=212,
                batch_size=64,
                causal_samples=10_000,
                reset_interval=100,
                reset_start=250,
                updates_per_step=2,
            ),
            True,
        ),
        (
            dict(
                total_steps=213,
                batch_size=64,
                causal_samples=10_000,
                reset_interval=100,
                reset_start=250,
                updates_per_step=2,
            ),
            False,
        ),
        # a reset exactly at --reset-start does not count ("more than" --reset-start updates): next one at 400
        (dict(total_steps=462, batch_size=64, causal_samples=10_000, reset_interval=100, reset_start=300), True),
    ],
)
def test_boundaries_by_hand(settings, equal):
    assert (equals_sac_reason(small(**settings)) is not None) is equal


def test_the_equal_sac_names_the_actor_schedule_only_where_it_differs_from_sacs():
    assert equal_sac_flags(small(total_steps=4_000)) == "--algo sac --policy-frequency 2"
    assert equal_sac_flags(small(total_steps=4_000, policy_frequency=1)) == "--algo sac"
    assert equal_sac_flags(small(total_steps=4_000, policy_frequency=3)) == "--algo sac --policy-frequency 3"


def test_reset_none_and_the_baselines():
    assert "--reset none" in equals_sac_reason(small(total_steps=4_000, reset="none"))
    assert equals_sac_reason(small(total_steps=100_000, reset="none")) is None  # fits happen
    assert equals_sac_reason(preset_config("small", "sac", total_steps=4_000)) is None
    assert equals_sac_reason(preset_config("small", "td3", total_steps=4_000)) is None


def _read(path: Path) -> list[dict]:
    with open(path) as file:
        return list(csv.DictReader(file))


def test_the_loop_resets_exactly_at_the_computed_boundary(tmp_path: Path):
    # 363 steps with a 64-transition batch make 300 updates: the reset due at update 300 is the last update.
    run_dir = tmp_path / "boundary"
    result = ace_rl(
        "train",
        *TINY,
        "--total-steps",
        "363",
        "--eval-every",
        "363",
        "--causal-samples",
        "1000",
        "--buffer-size",
        "1000",
        "--reset-interval",
        "100",
        "--reset-start",
        "250",
        "--run-dir",
        str(run_dir),
    )
    assert result.returncode == 0, result.stderr
    assert NOTE not in result.stderr
    resets = _read(run_dir / "resets.csv")
    assert [(row["env_step"], row["update"]) for row in resets] == [("363", "300")]


def test_ace_without_fits_or_resets_says_so_and_equals_sac(tmp_path: Path):
    budget = [
        "--total-steps",
        "400",
        "--eval-every",
        "200",
    ]  # small preset: fits from 5,000 steps, resets from 20,000 updates
    ace = ace_rl("train", *TINY, *budget, "--run-dir", str(tmp_path / "ace"))
    # SAC's own schedule updates the actor with every critic update; ACE's (and this ACE run's) on every 2nd
    sac = ace_rl(
        "train", *TINY, *budget, "--algo", "sac", "--policy-frequency", "2", "--run-dir", str(tmp_path / "sac")
    )
    assert ace.returncode == 0 and sac.returncode == 0, ace.stderr + sac.stderr
    note = [line for line in ace.stderr.splitlines() if NOTE in line]
    assert len(note) == 1 and note[0].startswith("ace-rl: note: this ACE run makes no causal fit")
    assert note[0].endswith("what --algo sac --policy-frequency 2 does")
    assert NOTE not in sac.stderr

    returns = {
        name: [row["eval_return_mean"] for row in _read(tmp_path / name / "metrics.csv")] for name in ("ace", "sac")
    }
    assert len(returns["ace"]) == 2 and returns["ace"] == returns["sac"]
    actors = {
        name: torch.load(tmp_path / name / "checkpoints" / "final.pt", weights_only=True)["actor"]
        for name in ("ace", "sac")
    }
    assert all(torch.equal(actors["ace"][key], actors["sac"][key]) for key in actors["sac"])

    report = ace_rl(
        "report", str(tmp_path / "ace"), str(tmp_path / "sac"), "--out", str(tmp_path / "report"), "--reps", "20"
    )
    assert report.returncode == 0, report.stderr
    summary = (tmp_path / "report" / "summary.md").read_text()
    noted = [line for line in summary.splitlines() if "compute exactly what SAC computes with their" in line]
    assert len(noted) == 1 and str(tmp_path / "ace") in noted[0] and str(tmp_path / "sac") not in noted[0]


def test_no_note_when_a_fit_happens(tmp_path: Path):
    result = ace_rl(
        "train",
        *TINY,
        "--total-steps",
        "300",
        "--eval-every",
        "300",
        "--causal-interval",
        "200",
        "--causal-samples",
        "150",
        "--run-dir",
        str(tmp_path / "fits"),
    )
    assert result.returncode == 0, result.stderr
    assert NOTE not in result.stderr
    assert len(_read(tmp_path / "fits" / "causal_weights.csv")) == 1
