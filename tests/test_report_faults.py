"""`ace-rl report` under faults and bad input: duplicate seeds, run directories without config.json, a bad
--seed, many groups (no common task, distinct colours, a bounded probability-of-improvement figure), and an
--out that cannot be written (a real full tmpfs, a real read-only mount).

Run directories are written as `ace-rl train` writes them (tests/test_report.py's write_run); the command
runs for real (in-process through ace_rl.cli.main, or as a subprocess)."""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from test_report import read_png, run_main, write_run
from test_run_safety import assert_one_line_error, fill_to_last_byte, snapshot, tmpfs

REPS = "50"
STEPS = [1000, 2000, 3000, 4000]


def small_sweep(root: Path, seeds: int = 3) -> Path:
    """Hopper-v5, ACE and SAC, a few seeds: a report with learning curves, aggregates and one comparison."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweep.json").write_text("{}")
    for seed in range(seeds):
        for algo, scale in (("ace", 1.2), ("sac", 1.0)):
            values = [round(v * scale * (1 + 0.1 * seed), 1) for v in (200, 600, 900, 1200)]
            write_run(root / f"Hopper-v5__{algo}__s{seed}", "Hopper-v5", algo, seed, STEPS, values)
    return root


def summary_table(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as file:
        return list(csv.DictReader(file))


def listed_figures(out: Path) -> list[str]:
    summary = (out / "summary.md").read_text()
    return [
        line.split("`")[1][: -len(".png")]
        for line in summary.split("## Figures")[1].splitlines()
        if line.startswith("- `")
    ]


# ------------------------------------------------------------------------------------------- duplicate seeds


def test_duplicate_seeds_in_a_group_are_flagged_and_counted_once(tmp_path, capsys):
    # What `ace-rl sweep --wandb-tags a b` made before list options went to every run whole: two identical
    # runs per seed that differ only in a logging option.
    sweep = tmp_path / "sweep"
    for seed in range(2):
        for tag, bonus in (("a", 0.0), ("b", 50.0)):
            write_run(
                sweep / f"Hopper-v5__ace__s{seed}__wandb-tags-{tag}",
                "Hopper-v5",
                "ace",
                seed,
                STEPS,
                [100.0, 200.0, 300.0, 400.0 + 100 * seed + bonus],
                wandb_tags=(tag,),
            )
    write_run(sweep / "Hopper-v5__sac__s0", "Hopper-v5", "sac", 0, STEPS, [1.0, 2.0, 3.0, 4.0])
    out = tmp_path / "out"
    assert run_main(str(sweep), "--out", str(out), "--reps", REPS) == 0
    captured = capsys.readouterr()

    final = next(row for row in summary_table(out) if row["group"] == "ace" and row["metric"] == "final_iqm")
    assert final["seeds"] == "2"  # not 4
    assert float(final["value"]) == pytest.approx(np.mean([400.0, 500.0]))  # the tags-a runs (first by name)
    summary = (out / "summary.md").read_text()
    assert "| Hopper-v5 | return | ace | 2 (<5) |" in summary
    for seed in range(2):
        kept, other = (str(sweep / f"Hopper-v5__ace__s{seed}__wandb-tags-{tag}") for tag in "ab")
        for text in (summary, captured.err):
            line = next(line for line in text.splitlines() if other in line)
            assert kept in line and f"seed {seed}" in line and "once" in line, line
    warnings = [line for line in captured.err.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("ace-rl: warning: Hopper-v5 / ace: "), captured.err
    assert "report of 3 runs" in captured.out  # 2 ACE seeds and 1 SAC seed; 5 run directories


# ------------------------------------------------------------------------------ run directory without config


def test_run_directory_without_config_is_named_not_dropped(tmp_path, capsys):
    sweep = small_sweep(tmp_path / "sweep", seeds=2)
    orphan = sweep / "Hopper-v5__ace__s7"
    write_run(orphan, "Hopper-v5", "ace", 7, STEPS, [1.0, 2.0, 3.0, 4.0])
    (orphan / "config.json").unlink()
    (orphan / "checkpoints").mkdir()
    (orphan / "checkpoints" / "best.pt").write_bytes(b"x")
    out = tmp_path / "out"
    assert run_main(str(sweep), "--out", str(out), "--reps", REPS) == 0
    captured = capsys.readouterr()
    summary = (out / "summary.md").read_text()
    for text in (summary, captured.err):
        line = next((line for line in text.splitlines() if str(orphan) in line), "")
        assert "config.json" in line and "left out" in line.lower(), text
    assert "report of 4 runs" in captured.out

    # Given on its own, such a directory is refused in one line that says what it lacks.
    code = run_main(str(orphan), "--out", str(tmp_path / "out2"), "--reps", REPS)
    err = capsys.readouterr().err
    assert code == 2
    assert_one_line_error(err, str(orphan), "config.json")
    assert not (tmp_path / "out2").exists()


# ------------------------------------------------------------------------------------------------ bad --seed


def test_bootstrap_seed_outside_numpy_range_is_one_line(tmp_path, capsys):
    sweep = small_sweep(tmp_path / "sweep", seeds=1)
    for seed in ("-1", str(2**32)):
        code = run_main(str(sweep), "--out", str(tmp_path / "out"), "--reps", REPS, "--seed", seed)
        assert code == 2
        assert_one_line_error(capsys.readouterr().err, "--seed", seed, "0 to 4294967295")
        assert not (tmp_path / "out").exists()
    assert run_main(str(sweep), "--out", str(tmp_path / "out"), "--reps", REPS, "--seed", str(2**32 - 1)) == 0


# ----------------------------------------------------------------------------------------------- many groups


@pytest.fixture(scope="module")
def report_of_26_groups(tmp_path_factory) -> Path:
    """26 groups on three tasks, none of which has them all: two ACE settings on Hopper and Walker; SAC with 7
    learning rates on Hopper, 6 others on Walker and 11 others on InvertedPendulum (which has no reference score,
    so it is in no aggregate). The aggregates thus see 15 groups (more than 12) without a common task, and the
    probability of improvement has 1 + 2 * 13 = 27 pairs."""
    root = tmp_path_factory.mktemp("groups26")
    sweep = root / "sweep"
    rates = [round(0.0001 * (index + 1), 4) for index in range(24)]
    for env, chosen in (("Hopper-v5", rates[:7]), ("Walker2d-v5", rates[7:13]), ("InvertedPendulum-v5", rates[13:])):
        for rate in chosen:
            write_run(
                sweep / f"{env}__sac__lr{rate}",
                env,
                "sac",
                0,
                STEPS,
                [10.0, 20.0, 30.0, 40.0 + rate * 1e4],
                learning_rate=rate,
            )
        for rate in (0.1, 0.2) if env != "InvertedPendulum-v5" else ():
            write_run(
                sweep / f"{env}__ace__lr{rate}",
                env,
                "ace",
                0,
                STEPS,
                [5.0, 10.0, 15.0, 20.0 + rate],
                learning_rate=rate,
            )
    out = root / "out"
    assert run_main(str(sweep), "--out", str(out), "--reps", "20") == 0
    return out


def test_more_than_twelve_groups_without_a_common_task_aggregate_what_compares(report_of_26_groups):
    out = report_of_26_groups
    aggregate = [row for row in summary_table(out) if row["section"] == "aggregate"]
    # The largest comparable set: Hopper's 9 groups on Hopper (9 group-task pairs; ACE's two on both tasks: 4).
    rates = [round(0.0001 * (index + 1), 4) for index in range(7)]
    assert {row["group"] for row in aggregate} == {"ace learning_rate=0.1", "ace learning_rate=0.2"} | {
        f"sac learning_rate={rate}" for rate in rates
    }
    assert {row["task"] for row in aggregate} == {"Hopper-v5"}
    summary = (out / "summary.md").read_text()
    assert "Walker2d-v5 is left out of the aggregate metrics" in summary
    assert "sac learning_rate=0.0008 is left out of the aggregate metrics" in summary


def pdf_stroke_colours(path: Path) -> set[tuple[float, float, float]]:
    """Every stroke colour (`r g b RG`) drawn in a PDF's content streams (matplotlib compresses them)."""
    colours = set()
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", path.read_bytes(), re.S):
        try:
            content = zlib.decompress(stream)
        except zlib.error:
            continue
        for r, g, b in re.findall(rb"([\d.]+) ([\d.]+) ([\d.]+) RG", content):
            colours.add((float(r), float(g), float(b)))
    return colours


def test_26_groups_are_drawn_in_26_distinct_colours(report_of_26_groups):
    colours = pdf_stroke_colours(report_of_26_groups / "learning_curves.pdf")
    group_colours = {colour for colour in colours if len(set(colour)) > 1}  # axes, grid and markers are grey
    assert len(group_colours) == 26, sorted(group_colours)


def test_probability_of_improvement_figures_stay_under_a_height_bound(report_of_26_groups):
    bound = 2100  # px: at most 24 pairs a figure, (1.4 + 0.5 * 24) inches at 150 dpi; one figure of all 27 was 2,235 px
    improvements = [row for row in summary_table(report_of_26_groups) if row["section"] == "probability_of_improvement"]
    assert len(improvements) == 1 + 2 * 13
    figures = [stem for stem in listed_figures(report_of_26_groups) if stem.startswith("probability_of_improvement")]
    assert figures == ["probability_of_improvement_1_of_2", "probability_of_improvement_2_of_2"]
    for stem in figures:
        image = read_png(report_of_26_groups / f"{stem}.png")
        assert 300 < image.shape[0] <= bound, (stem, image.shape)
        assert image[..., :3].std() > 0.05


# -------------------------------------------------------------------------------------- an unwritable --out


def test_full_disk_leaves_no_partial_report_and_keeps_the_earlier_one(tmp_path, capsys):
    sweep = small_sweep(tmp_path / "sweep")
    measured = tmp_path / "measured"
    assert run_main(str(sweep), "--out", str(measured), "--reps", REPS) == 0
    capsys.readouterr()
    size = sum(path.stat().st_size for path in measured.iterdir())
    with tmpfs(tmp_path / "disk", f"{size // 2 // 1024}k") as disk:  # room for some figures, not all
        out = disk / "report"
        code = run_main(str(sweep), "--out", str(out), "--reps", REPS)
        assert code != 0
        assert_one_line_error(capsys.readouterr().err, str(out), "No space left on device")
        assert list(disk.iterdir()) == []  # no figures, no temporary folder, no empty --out

        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        assert run_main(str(sweep), "--out", str(out), "--reps", REPS) == 0
        capsys.readouterr()
        before = snapshot(out)
        write_run(sweep / "Hopper-v5__sac__s3", "Hopper-v5", "sac", 3, STEPS, [1.0, 2.0, 3.0, 4.0])
        fill_to_last_byte(disk)
        code = run_main(str(sweep), "--out", str(out), "--reps", REPS)
        assert code != 0
        assert_one_line_error(capsys.readouterr().err, str(out), "No space left on device", "earlier report")
        assert snapshot(out) == before
        assert sorted(path.name for path in disk.iterdir()) == ["filler", "report"]
        assert not [path for path in out.iterdir() if path.name.startswith(".")]

        (disk / "filler").unlink()
        assert run_main(str(sweep), "--out", str(out), "--reps", REPS) == 0
        assert "report of 7 runs" in capsys.readouterr().out
        assert "7 runs from" in (out / "summary.md").read_text()


def test_read_only_out_is_one_line_and_changes_nothing(tmp_path, capsys):
    sweep = small_sweep(tmp_path / "sweep", seeds=2)
    with tmpfs(tmp_path / "disk", "4m") as disk:
        out = disk / "report"
        assert run_main(str(sweep), "--out", str(out), "--reps", REPS) == 0
        capsys.readouterr()
        before = snapshot(disk)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        for target in (out, disk / "new", disk, disk / "new" / "deeper"):
            code = run_main(str(sweep), "--out", str(target), "--reps", REPS)
            assert code != 0, target
            assert_one_line_error(capsys.readouterr().err, str(target), "Read-only file system")
        assert snapshot(disk) == before


def test_a_new_report_replaces_the_earlier_one_whole(tmp_path, capsys):
    sweep = small_sweep(tmp_path / "sweep", seeds=1)
    out = tmp_path / "out"
    (tmp_path / "out").mkdir()
    (out / "notes.txt").write_text("mine")  # not the report's: kept
    assert run_main(str(sweep), "--out", str(out), "--reps", REPS) == 0
    assert "probability_of_improvement" in listed_figures(out)
    for run in sweep.glob("*__ace__*"):
        (run / "config.json").rename(run / "config.json.bak")  # now SAC only, and a lost-config warning
    assert run_main(str(sweep), "--out", str(out), "--reps", REPS) == 0
    capsys.readouterr()
    figures = listed_figures(out)
    assert "probability_of_improvement" not in figures
    report_files = {f"{stem}{suffix}" for stem in figures for suffix in (".png", ".pdf")}
    assert sorted(path.name for path in out.iterdir()) == sorted(
        report_files | {"summary.md", "summary.csv", "curves.csv", "notes.txt"}
    )


def test_a_killed_reports_staging_folder_is_removed_by_the_next_report(tmp_path, capsys):
    sweep = small_sweep(tmp_path / "sweep", seeds=2)
    out = tmp_path / "report"
    killed = subprocess.Popen(
        [sys.executable, "-m", "ace_rl.cli", "report", str(sweep), "--out", str(out), "--reps", REPS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".report.report-*")):  # staged next to --out, which does not exist yet
        assert killed.poll() is None and time.monotonic() < deadline, "the report ended before it staged anything"
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    abandoned = list(tmp_path.glob(".report.report-*"))
    assert len(abandoned) == 1 and not out.exists()
    # Staging folders of a report that still runs (this process), or of another machine, are not touched.
    alive = tmp_path / f".report.report-{socket.gethostname()}-{os.getpid()}-0000"
    other_machine = tmp_path / ".report.report-elsewhere-1-0000"
    alive.mkdir()
    other_machine.mkdir()

    assert run_main(str(sweep), "--out", str(out), "--reps", REPS) == 0
    capsys.readouterr()
    assert not abandoned[0].exists()
    assert alive.is_dir() and other_machine.is_dir()
    assert (out / "summary.md").is_file()
