"""`ace-rl report`: statistics against rliable called directly and hand computations, alignment, grouping,
figures, summary, errors, and the real command line (on written run directories and on a real tiny run)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from ace_rl.config import preset_config, to_json_dict
from ace_rl.logger import METRICS_COLUMNS, RESETS_COLUMNS, causal_columns
from ace_rl.report import (
    CAUSAL_SIZE,
    DPI,
    LEGEND_LINE,
    PANEL_SIZE,
    ReportError,
    align,
    build_report,
    learning_curves_layout,
    libraries,
    summary_markdown,
)
from ace_rl.rundir import RunDir, find_runs
from ace_rl.scores import normalisation

try:
    libraries()
except ReportError as missing:
    pytest.skip(str(missing), allow_module_level=True)

from rliable import library as rly
from rliable import metrics

REPS = 200
HOPPER_RANDOM, HOPPER_EXPERT = -20.272305, 3234.3


def write_run(
    path: Path, env: str, algo: str, seed: int, steps, scores, success=None, causal=None, resets=None, **settings
) -> Path:
    """A run directory in the layout `ace-rl train` writes: config.json and the four CSV tables."""
    run = RunDir(path)
    run.path.mkdir(parents=True)
    run.config.write_text(json.dumps(to_json_dict(preset_config("small", algo, env=env, seed=seed, **settings))))
    with open(run.metrics, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(METRICS_COLUMNS)
        for index, (step, value) in enumerate(zip(steps, scores)):
            rate = "" if success is None else success[index]
            writer.writerow([step, step, value, 1.0, rate, 0.5])
    action_dim = 3 if causal is None else len(causal[0][1])
    with open(run.causal_weights, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(causal_columns(action_dim))
        for step, weights in causal or []:
            writer.writerow([step, *weights, "sink", 0.01, "", ""])
    with open(run.resets, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(RESETS_COLUMNS)
        for step, ratio in resets or []:
            writer.writerow([step, step, ratio, min(max(1 - ratio, 0.2), 0.9), "reset"])
    return run.path


def seeded_rliable(seed: int, call):
    """rliable's bootstrap draws from NumPy's global generator, which the report seeds the same way."""
    np.random.seed(seed)
    return call()


def iqm_by_hand(values) -> float:
    """The mean of the middle half: sort, drop the lowest and the highest quarter (n divisible by 4)."""
    ordered = np.sort(np.asarray(values, dtype=float))
    quarter = len(ordered) // 4
    assert quarter * 4 == len(ordered)
    return float(np.mean(ordered[quarter : len(ordered) - quarter]))


def test_per_task_iqm_and_interval_match_rliable_and_hand(tmp_path):
    finals = np.array([100.0, 900.0, 300.0, 250.0, 700.0, 50.0, 400.0, 2000.0])  # 8 seeds
    steps = [1000, 2000, 3000]
    for seed, final in enumerate(finals):
        write_run(tmp_path / f"s{seed}", "Hopper-v5", "sac", seed, steps, [final / 4, final / 2, final])
    report = build_report([tmp_path], reps=REPS, seed=7)
    (task,) = report.tasks
    (result,) = task.groups
    assert task.comparison_step == 3000 and result.group.seeds == list(range(8))

    assert result.final.value == pytest.approx(iqm_by_hand(finals))  # (250 + 300 + 400 + 700) / 4
    assert result.final.value == pytest.approx(412.5)
    assert result.final.value == pytest.approx(scipy.stats.trim_mean(finals, 0.25))
    _point, interval = seeded_rliable(
        7,
        lambda: rly.get_interval_estimates(
            {"sac": finals[:, None]}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=REPS
        ),
    )
    assert (result.final.low, result.final.high) == pytest.approx(tuple(interval["sac"][:, 0]))
    assert result.final.low < result.final.value < result.final.high and result.final.runs == 8

    normalised = (finals - HOPPER_RANDOM) / (HOPPER_EXPERT - HOPPER_RANDOM)
    assert result.final_normalised.value == pytest.approx(iqm_by_hand(normalised))

    # The curve: IQM over seeds at each step, its band from rliable's per-frame IQM (its tutorial's idiom).
    values = np.stack([finals / 4, finals / 2, finals], axis=1)
    assert result.curve.iqm == pytest.approx([iqm_by_hand(values[:, j]) for j in range(3)])
    _, curve_interval = seeded_rliable(
        7,
        lambda: rly.get_interval_estimates(
            {"c": values[:, None, :]},
            lambda s: np.array([metrics.aggregate_iqm(s[..., j]) for j in range(s.shape[-1])]),
            reps=REPS,
        ),
    )
    assert result.curve.low == pytest.approx(curve_interval["c"][0])
    assert result.curve.high == pytest.approx(curve_interval["c"][1])
    assert list(result.curve.runs) == [8, 8, 8]

    # AUC: trapezoids through (1000, f/4), (2000, f/2), (3000, f) over 2000 steps; best: the last evaluation.
    aucs = (1000 * (finals / 4 + finals / 2) / 2 + 1000 * (finals / 2 + finals) / 2) / 2000
    assert result.auc.value == pytest.approx(iqm_by_hand(aucs))
    assert result.best.value == pytest.approx(iqm_by_hand(finals))

    again = build_report([tmp_path], reps=REPS, seed=7).tasks[0].groups[0]
    assert (again.final.low, again.final.high) == (result.final.low, result.final.high)  # seeded


def test_normalisation_by_hand():
    hopper = normalisation("Hopper-v5", success=False)
    assert hopper(HOPPER_EXPERT) == pytest.approx(1.0) and hopper(HOPPER_RANDOM) == pytest.approx(0.0)
    assert hopper(1000.0) == pytest.approx((1000 + 20.272305) / (3234.3 + 20.272305))
    assert normalisation("HalfCheetah-v4", False)(6000.0) == pytest.approx((6000 + 280.178953) / (12135.0 + 280.178953))
    assert normalisation("Walker2d-v5", False)(2000.0) == pytest.approx((2000 - 1.629008) / (4592.3 - 1.629008))
    assert normalisation("Ant-v5", False)(0.0) == pytest.approx(325.6 / (3879.7 + 325.6))
    assert normalisation("dmc:walker-run", False)(640.0) == pytest.approx(0.64)
    assert normalisation("metaworld:door-open-v3", True)(0.3) == pytest.approx(0.3)
    assert normalisation("AdroitHandDoor-v1", True)(1.0) == pytest.approx(1.0)
    assert normalisation("InvertedPendulum-v5", False) is None
    assert normalisation("Humanoid-v5", False) is None
    assert "D4RL" in hopper.description and "v2" in hopper.description


def test_aggregate_metrics_match_rliable(tmp_path):
    rng = np.random.default_rng(0)
    steps = [1000, 2000]
    finals = {}
    for algo, offset in (("ace", 300.0), ("sac", 0.0)):
        hopper = np.round(rng.uniform(500, 2500, 5) + offset, 1)
        walker = np.round(rng.uniform(200, 800, 5) + offset / 10, 1)
        finals[algo] = (hopper, walker)
        for seed in range(5):
            write_run(tmp_path / f"hop_{algo}_{seed}", "Hopper-v5", algo, seed, steps, [hopper[seed] / 2, hopper[seed]])
            write_run(
                tmp_path / f"walk_{algo}_{seed}", "dmc:walker-run", algo, seed, steps, [walker[seed] / 2, walker[seed]]
            )
    report = build_report([tmp_path], reps=REPS, seed=3)
    aggregate = report.aggregate
    assert aggregate.tasks == ["Hopper-v5", "dmc:walker-run"] and aggregate.labels == ["ace", "sac"]

    scores = {
        algo: np.stack([(hopper - HOPPER_RANDOM) / (HOPPER_EXPERT - HOPPER_RANDOM), walker / 1000], axis=1)
        for algo, (hopper, walker) in finals.items()
    }
    for algo in scores:
        assert aggregate.scores[algo] == pytest.approx(scores[algo])

    def four(x):
        return np.array(
            [
                metrics.aggregate_iqm(x),
                metrics.aggregate_median(x),
                metrics.aggregate_mean(x),
                metrics.aggregate_optimality_gap(x),
            ]
        )

    point, interval = seeded_rliable(3, lambda: rly.get_interval_estimates(scores, four, reps=REPS))
    for algo in scores:
        estimates = aggregate.metrics[algo]
        assert [e.value for e in estimates] == pytest.approx(list(point[algo]))
        assert [e.low for e in estimates] == pytest.approx(list(interval[algo][0]))
        assert [e.high for e in estimates] == pytest.approx(list(interval[algo][1]))
        assert all(e.runs == 5 for e in estimates)
    assert aggregate.metrics["ace"][0].value == pytest.approx(scipy.stats.trim_mean(scores["ace"].ravel(), 0.25))
    assert aggregate.metrics["ace"][2].value == pytest.approx(scores["ace"].mean())

    (improvement,) = aggregate.improvements
    assert (improvement.x, improvement.y) == ("ace", "sac")
    p_point, p_interval = seeded_rliable(
        3,
        lambda: rly.get_interval_estimates(
            {"ace,sac": (scores["ace"], scores["sac"])}, metrics.probability_of_improvement, reps=REPS
        ),
    )
    assert improvement.estimate.value == pytest.approx(float(p_point["ace,sac"]))
    assert (improvement.estimate.low, improvement.estimate.high) == pytest.approx(
        tuple(np.ravel(p_interval["ace,sac"]))
    )
    # By hand: P(X > Y) per task is the share of (x, y) pairs with x > y (no ties here), averaged over tasks.
    by_hand = np.mean([np.mean(scores["ace"][:, t, None] > scores["sac"][None, :, t]) for t in range(2)])
    assert improvement.estimate.value == pytest.approx(by_hand)

    profiles, _ = seeded_rliable(3, lambda: rly.create_performance_profile(scores, aggregate.taus, reps=REPS))
    for algo in scores:
        assert aggregate.profiles[algo] == pytest.approx(profiles[algo])
        assert aggregate.profiles[algo][0] == pytest.approx(np.mean(scores[algo] > aggregate.taus[0]))

    # The sample-efficiency curve: IQM of the normalised scores of all runs and tasks at each step.
    at_1000 = {
        algo: s / 2 - np.array([HOPPER_RANDOM / 2 / (HOPPER_EXPERT - HOPPER_RANDOM), 0]) for algo, s in scores.items()
    }
    curve = aggregate.curve["ace"]
    assert list(curve.steps) == [1000, 2000]
    assert curve.iqm[1] == pytest.approx(metrics.aggregate_iqm(scores["ace"]))
    assert curve.iqm[0] == pytest.approx(metrics.aggregate_iqm(at_1000["ace"]))


def test_align_unequal_runs_by_hand():
    aligned = align(
        [np.array([100, 200, 300, 400.0]), np.array([150, 300.0])], [np.array([1, 2, 3, 4.0]), np.array([10, 40.0])]
    )
    assert list(aligned.steps) == [100, 150, 200, 300, 400]
    first, second = aligned.values
    assert first == pytest.approx([1, 1.5, 2, 3, 4])
    assert np.isnan(second[0]) and np.isnan(second[4])  # never extrapolated
    assert second[1:4] == pytest.approx([10, 20, 40])
    assert aligned.interpolated.tolist() == [[False, True, False, False, False], [False, False, True, False, False]]
    assert list(aligned.runs_per_step) == [1, 2, 2, 2, 1]


def test_report_aligns_runs_of_different_lengths_and_periods(tmp_path):
    # seed 0: every 1000 steps to 6000; seed 1: every 1500 to 4500; seed 2: every 2000 to 8000.
    runs = {
        0: ([1000, 2000, 3000, 4000, 5000, 6000], [10, 20, 30, 40, 50, 60]),
        1: ([1500, 3000, 4500], [30, 60, 90]),
        2: ([2000, 4000, 6000, 8000], [5, 10, 15, 20]),
    }
    for seed, (steps, values) in runs.items():
        write_run(tmp_path / f"r{seed}", "InvertedPendulum-v5", "sac", seed, steps, values, eval_every=steps[0])
    report = build_report([tmp_path], reps=REPS, seed=0)
    (task,) = report.tasks
    (result,) = task.groups
    assert len(result.group.runs) == 3  # different eval periods and lengths do not split the group
    assert (task.start_step, task.comparison_step) == (2000, 4500)
    assert result.finals == pytest.approx([45.0, 90.0, 11.25])  # each run interpolated at step 4500
    assert result.final.value == pytest.approx(np.mean([45.0, 90.0, 11.25]))  # IQM of 3 trims nothing
    # Each run's values lie on a line through the origin, so its mean height over [2000, 4500] is that of the ends.
    aucs = [(20 + 45) / 2, (40 + 90) / 2, (5 + 11.25) / 2]
    assert result.auc.value == pytest.approx(np.mean(aucs))
    assert result.best.value == pytest.approx(np.mean([40.0, 90.0, 10.0]))  # best evaluation up to 4500

    curve = result.curve
    union = sorted({s for steps, _ in runs.values() for s in steps})
    assert list(curve.steps) == union
    expected_runs = [sum(steps[0] <= s <= steps[-1] for steps, _ in runs.values()) for s in union]
    assert list(curve.runs) == expected_runs  # 1000: seed 0 only; 8000: seed 2 only
    assert curve.iqm[union.index(8000)] == pytest.approx(20.0)
    at_3000 = [30.0, 60.0, 7.5]
    assert curve.iqm[union.index(3000)] == pytest.approx(np.mean(at_3000))

    notes = "\n".join(report.notes)
    assert "up to env step 4,500" in notes and "interpolated" in notes and "fewer than all 3 runs" in notes


def test_runs_covering_disjoint_steps_are_compared_where_most_runs_are(tmp_path):
    short = ([100, 200, 300], [1.0, 2.0, 3.0])
    for seed in range(3):
        write_run(tmp_path / f"short{seed}", "Hopper-v5", "sac", seed, *short)
    write_run(tmp_path / "late", "Hopper-v5", "sac", 3, [500, 1000, 2000], [5.0, 6.0, 7.0])
    write_run(tmp_path / "late_ace", "Hopper-v5", "ace", 0, [500, 1000], [5.0, 6.0])
    report = build_report([tmp_path], reps=20)
    (task,) = report.tasks
    assert task.comparison_step == 300  # three runs cover it; at most two cover any later step
    ace, sac = task.groups
    assert ace.final is None and [run.path.name for run in ace.compared] == []
    assert [run.path.name for run in sac.compared] == ["short0", "short1", "short2"]
    assert sac.final.value == pytest.approx(3.0) and sac.final.runs == 3
    assert list(sac.curve.runs) == [3, 3, 3, 1, 1, 1]  # the late run stays in the curve
    assert any("late" in note and "leave out" in note for note in report.notes)
    summary = summary_markdown(report)
    assert "| Hopper-v5 | return | ace | 0 of 1 | 300 | - |" in summary
    assert "| Hopper-v5 | return | sac | 3 of 4 (<5) | 300 |" in summary


def test_swept_options_make_groups(tmp_path):
    steps, values = [1000, 2000], [1.0, 2.0]
    for seed in range(2):
        write_run(tmp_path / f"a{seed}", "Hopper-v5", "ace", seed, steps, values, reset="none")
        write_run(tmp_path / f"b{seed}", "Hopper-v5", "ace", seed, steps, values, reset="reset", threads=seed + 1)
        write_run(tmp_path / f"c{seed}", "Hopper-v5", "sac", seed, steps, values, total_steps=5000 + seed)
        write_run(tmp_path / f"d{seed}", "Walker2d-v5", "ace", seed, steps, values)
        write_run(tmp_path / f"e{seed}", "Walker2d-v5", "ace", seed, steps, values, reward="dense", eval_every=77)
    # Logging options do not split either; a setting missing from an older config.json had its default.
    write_run(tmp_path / "f2", "Hopper-v5", "sac", 2, steps, values, log_every=7, checkpoint_every=9)
    older = write_run(tmp_path / "f3", "Hopper-v5", "sac", 3, steps, values)
    config = json.loads(RunDir(older).config.read_text())
    del config["gamma"]
    RunDir(older).config.write_text(json.dumps(config))
    groups = {
        (task.name, r.group.label): r.group.seeds
        for task in build_report([tmp_path], reps=20).tasks
        for r in task.groups
    }
    assert groups == {
        ("Hopper-v5", "ace reset=none"): [0, 1],
        ("Hopper-v5", "ace reset=reset"): [0, 1],  # threads differ: not an experiment setting
        ("Hopper-v5", "sac"): [0, 1, 2, 3],  # total_steps differ: aligned, not split
        ("Walker2d-v5", "ace reset=reset"): [0, 1],  # the same label on every task; a repeated seed counts once
    }


def test_swept_preset_names_only_what_differs_from_it(tmp_path):
    for seed in range(2):
        write_run(tmp_path / f"small{seed}", "Hopper-v5", "ace", seed, [1000], [1.0])
        paper = write_run(tmp_path / f"paper{seed}", "Hopper-v5", "ace", seed, [1000], [2.0])
        config = to_json_dict(preset_config("paper", "ace", env="Hopper-v5", seed=seed, hidden_size=64))
        RunDir(paper).config.write_text(json.dumps(config))
    labels = [r.group.label for r in build_report([tmp_path], reps=20).tasks[0].groups]
    assert labels == ["ace preset=paper hidden_size=64", "ace preset=small"]


def test_find_runs_in_nested_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep).mkdir()
    (sweep / "sweep.json").write_text("{}")
    first = write_run(sweep / "Hopper-v5" / "ace__s0", "Hopper-v5", "ace", 0, [1000], [1.0])
    second = write_run(sweep / "ace__s1", "Hopper-v5", "ace", 1, [1000], [1.0])
    (first / "checkpoints" / "nested").mkdir(parents=True)  # a run's own folders are not searched
    assert find_runs(sweep) == sorted([first, second])
    assert find_runs(first) == [first]
    # The same run given twice (as a sweep and on its own) counts once.
    assert len(build_report([sweep, first], reps=20).runs) == 2


def run_main(*args: str) -> int:
    from ace_rl.cli import main

    try:
        main(["report", *args])
    except SystemExit as exit:
        return int(exit.code)
    return 0


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty", "holds no runs"),
        ("config", "unreadable config.json"),
        ("metrics", "not a number"),
        ("no_metrics", "cannot be read"),
        ("no_evaluations", "no evaluation rows"),
    ],
)
def test_errors_are_one_line(tmp_path, capsys, case, message):
    root = tmp_path / "runs"
    root.mkdir()
    if case != "empty":
        run = write_run(root / "r0", "Hopper-v5", "ace", 0, [1000, 2000], [1.0, 2.0])
    if case == "config":
        RunDir(run).config.write_text("{not json")
    elif case == "metrics":
        RunDir(run).metrics.write_text(",".join(METRICS_COLUMNS) + "\n1000,1,abc,0,,0\n")
    elif case == "no_metrics":
        RunDir(run).metrics.unlink()
    elif case == "no_evaluations":
        RunDir(run).metrics.write_text(",".join(METRICS_COLUMNS) + "\n")
    code = run_main(str(root), "--out", str(tmp_path / "out"), "--reps", "10")
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("ace-rl: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_skip_empty_leaves_out_runs_without_evaluations(tmp_path):
    write_run(tmp_path / "done", "Hopper-v5", "ace", 0, [1000, 2000], [1.0, 2.0])
    write_run(tmp_path / "starting", "Hopper-v5", "ace", 1, [], [])
    with pytest.raises(ReportError, match="--skip-empty"):
        build_report([tmp_path], reps=10)
    report = build_report([tmp_path], reps=10, skip_empty=True)
    assert [run.seed for run in report.runs] == [0]
    assert any("starting" in note and "--skip-empty" in note for note in report.notes)
    with pytest.raises(ReportError, match="--reps"):
        build_report([tmp_path], reps=0)


def last_return(run_dir: Path) -> float:
    with open(RunDir(run_dir).metrics) as file:
        return float(list(csv.DictReader(file))[-1]["eval_return_mean"])


def read_png(path: Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_report_command_end_to_end(tmp_path):
    """The real command on a sweep directory (runs nested one level) and a single run: figures, summary, CSVs."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{}")
    rng = np.random.default_rng(1)
    steps = [1000, 2000, 3000, 4000]
    for seed in range(5):
        for algo in ("ace", "sac"):
            values = np.round(np.array([200, 600, 900, 1200]) * rng.uniform(0.8, 1.2), 1)
            causal = [(2000, [0.5, 1.5, 1.0]), (4000, [0.8, 1.1, 1.1])] if algo == "ace" else None
            resets = [(3000, 0.1 + 0.02 * seed)] if algo == "ace" else None
            write_run(
                sweep / "Hopper-v5" / f"{algo}__s{seed}",
                "Hopper-v5",
                algo,
                seed,
                steps,
                values,
                causal=causal,
                resets=resets,
            )
    for seed in range(3):  # a success task with 3 seeds: flagged
        write_run(
            sweep / f"door__s{seed}",
            "metaworld:door-open-v3",
            "ace",
            seed,
            steps,
            [5.0] * 4,
            success=[0.0, 0.2, 0.5, 0.4 + 0.1 * seed],
        )
    single = write_run(tmp_path / "single", "dmc:cheetah-run", "ace", 0, steps, [50.0, 80.0, 90.0, 95.0])
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "ace_rl.cli", "report", str(sweep), str(single), "--out", str(out), "--reps", "50"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert f"report of 14 runs on 3 task(s) written to {out}" in result.stdout

    summary = (out / "summary.md").read_text()
    figures = [
        line.split("`")[1][: -len(".png")]
        for line in summary.split("## Figures")[1].splitlines()
        if line.startswith("- `")
    ]
    assert set(figures) == {
        "learning_curves",
        "causal_weights__Hopper-v5__ace",
        "aggregate_metrics",
        "sample_efficiency",
        "performance_profile",
        "probability_of_improvement",
    }
    for stem in figures:
        image = read_png(out / f"{stem}.png")
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image[..., :3].std() > 0.05, stem  # not blank
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    # Three task panels in one row, the legend (two groups, one line each) below them.
    (width, height), _, _ = learning_curves_layout(3, ["ace (1-5 seeds)", "sac (5 seeds)"])
    assert width == 3 * PANEL_SIZE[0] and height == pytest.approx(PANEL_SIZE[1] + LEGEND_LINE + 0.15)
    assert read_png(out / "learning_curves.png").shape[:2] == (round(height * DPI), round(width * DPI))
    assert read_png(out / "causal_weights__Hopper-v5__ace.png").shape[:2] == (
        round(CAUSAL_SIZE[1] * DPI),
        round(CAUSAL_SIZE[0] * DPI),
    )

    assert "| metaworld:door-open-v3 | success rate | ace | 3 (<5) |" in summary
    assert "| dmc:cheetah-run | return | ace | 1 (<5) |" in summary
    assert "| Hopper-v5 | return | ace | 5 |" in summary and "| Hopper-v5 | return | sac | 5 |" in summary
    assert "D4RL" in summary and "success rate as it is" in summary and "return / 1000" in summary
    with open(out / "summary.csv") as file:
        table = list(csv.DictReader(file))
    door = [row for row in table if row["task"] == "metaworld:door-open-v3"]
    assert door and all(row["few_seeds"] == "True" and row["seeds"] == "3" for row in door)
    final = next(
        row for row in table if row["task"] == "Hopper-v5" and row["group"] == "sac" and row["metric"] == "final_iqm"
    )
    assert final["few_seeds"] == "False" and final["seeds"] == "5" and final["env_step"] == "4000"
    finals = [last_return(sweep / "Hopper-v5" / f"sac__s{seed}") for seed in range(5)]
    assert float(final["value"]) == pytest.approx(scipy.stats.trim_mean(finals, 0.25), rel=1e-5)
    aggregate = [row for row in table if row["section"] == "aggregate"]
    assert {row["metric"] for row in aggregate} == {"iqm", "median", "mean", "optimality_gap"}
    assert {row["tasks"] for row in aggregate} == {"3"}  # ace on all three tasks; sac on Hopper only is left out
    (improvement,) = [row for row in table if row["section"] == "probability_of_improvement"]
    assert improvement["group"] == "ace > sac" and improvement["task"] == "Hopper-v5"
    with open(out / "curves.csv") as file:
        curves = list(csv.DictReader(file))
    assert {row["runs"] for row in curves if row["task"] == "Hopper-v5"} == {"5"}


def test_report_of_a_real_tiny_run(tmp_path, capsys):
    from ace_rl.trainer import run_training

    run_dir = tmp_path / "hopper"
    run_training(
        preset_config(
            "small",
            "ace",
            env="Hopper-v5",
            seed=0,
            run_dir=run_dir,
            total_steps=300,
            start_steps=100,
            eval_every=100,
            eval_episodes=1,
            hidden_size=32,
            batch_size=32,
            causal_interval=100,
            causal_samples=100,
            reset_interval=100,
            reset_start=50,
            threads=1,
            progress=False,
        )
    )
    out = tmp_path / "out"
    assert run_main(str(tmp_path), "--out", str(out), "--reps", "20") == 0
    assert "report of 1 runs on 1 task(s)" in capsys.readouterr().out
    with open(out / "summary.csv") as file:
        table = list(csv.DictReader(file))
    final = next(row for row in table if row["metric"] == "final_iqm")
    normalised = next(row for row in table if row["metric"] == "final_iqm_normalised")
    assert (final["task"], final["group"], final["seeds"], final["env_step"]) == ("Hopper-v5", "ace", "1", "300")
    assert float(final["value"]) == pytest.approx(last_return(run_dir), rel=1e-5)
    assert float(normalised["value"]) == pytest.approx(
        (last_return(run_dir) - HOPPER_RANDOM) / (HOPPER_EXPERT - HOPPER_RANDOM), rel=1e-4
    )
    with open(RunDir(run_dir).resets) as file:
        assert list(csv.DictReader(file))  # the figure has resets to mark
    image = read_png(out / "causal_weights__Hopper-v5__ace.png")
    assert image.shape[:2] == (round(CAUSAL_SIZE[1] * DPI), round(CAUSAL_SIZE[0] * DPI))
    assert image[..., :3].std() > 0.05
