"""The headline numbers of the documentation are recomputed from the committed run directories.

A table (or a paragraph) whose numbers come from runs is marked by an HTML comment right before it that names
the run directories, for example

    <!-- recompute: dirs=benchmarks/results/sb3_baselines task=Hopper-v5 rows=td3,sb3-td3 -->

for a table whose rows are the groups `td3` and `sb3-td3` of Hopper-v5 (a run directory is named
`TASK__GROUP__sSEED[__MORE]`; its group is the name without the task and the seed part; `SWEEP/GROUP` names the
group's runs inside a directory SWEEP, for a study whose arms are separate sweeps with the same run names), and

    <!-- recompute-text: dirs=benchmarks/results/sb3_baselines claims=Hopper-v5:P(td3>sb3-td3),Hopper-v5:auc(sac) -->

for a paragraph whose intervals (`0.72 [0.32, 1.00]`, ...) are, in order, those claims. A table without `task=`
has task names as column headers and the final IQM in each cell. What each column of a table holds is read from
its header: `seeds`; `seeds 0-4, final` (each run's final return, in seed order); final, AUC or best IQM [95 % CI];
`5k`, `10k`, ... (the IQM learning curve at that env step). A table or paragraph whose runs were not committed is
marked `<!-- not recomputable: DIR ... -->` instead, naming a directory that holds no run.

Every number is recomputed here from the runs' metrics.csv with code of its own (pandas, numpy, scipy's
trim_mean, and rliable called directly), not with `ace_rl.report`, whose definitions it follows:

- a run's score is its evaluation success rate where its metrics.csv has one at every evaluation (a task with a
  success signal, as the report scores it), its evaluation return otherwise;
- the comparison step is the last env step that every run of the task (in the marker's directories) reached;
  `final` is each run's score there (interpolated linearly between evaluations);
- `AUC` is the area under a run's curve of scores (trapezoids) from the first env step that every
  run has evaluated to the comparison step, divided by that span: the curve's mean height;
- `best` is each run's highest evaluation up to the comparison step;
- the IQM over seeds is the mean of the middle 50 % (scipy's `trim_mean(values, 0.25)`);
- the intervals are rliable's 95 % stratified-bootstrap percentile intervals, 2,000 repetitions, with NumPy's
  global generator seeded with 0 right before each call (rliable draws from it), runs in seed order;
- P(X > Y) is rliable's `probability_of_improvement` of the final scores, bootstrapped the same way.

Point estimates and intervals must match to the precision the documentation prints them at.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import trim_mean

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "docs" / "benchmarks.md", REPO / "docs" / "algorithm.md"]
REPS = 2000
SEED = 0
CONFIDENCE = 0.95

NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
INTERVAL = re.compile(rf"(?<![\w.,\[-])({NUMBER}) \[({NUMBER}), ({NUMBER})\]")
MARKER = re.compile(r"^<!--\s*(recompute|recompute-text|not recomputable):\s*(.*?)\s*-->$")
RESULTS_MENTION = re.compile(r"benchmarks/results/[\w./-]*\w")
CLAIM = re.compile(r"^(?P<task>[^:]+):(?P<metric>final|auc|best|P)\((?P<x>[^>)]+)(?:>(?P<y>[^)]+))?\)$")
CURVE_STEP = re.compile(r"^(\d+)k$")


# ----------------------------------------------------------------------------------------------- the runs


@dataclass(frozen=True)
class RunData:
    path: Path
    task: str
    group: str
    seed: int
    steps: np.ndarray
    scores: np.ndarray
    """Evaluation success rate where the run reports one at every evaluation, evaluation return otherwise."""
    folders: tuple[str, ...]
    """The directories between the results root and the run directory (`benchmarks`, `results`, `study`, ...)."""


def parse_run_name(name: str) -> tuple[str, str, int]:
    """`Hopper-v5__ace__s0__causal-method-sink` -> (Hopper-v5, ace__causal-method-sink, 0)."""
    parts = name.split("__")
    index = next(i for i, part in enumerate(parts) if i > 0 and re.fullmatch(r"s\d+", part))
    return parts[0], "__".join(parts[1:index] + parts[index + 1 :]), int(parts[index][1:])


@functools.cache
def load_runs(root: Path, dirs: tuple[str, ...]) -> tuple[RunData, ...]:
    """Every run directory (one with a metrics.csv) at or below ``dirs``, in seed order."""
    runs = []
    for directory in dirs:
        base = root / directory
        assert base.is_dir(), f"{base} does not exist"
        for metrics in sorted(base.rglob("metrics.csv")):
            task, group, seed = parse_run_name(metrics.parent.name)
            config = json.loads((metrics.parent / "config.json").read_text())
            assert (config["env"], int(config["seed"])) == (task, seed), f"{metrics.parent}: name and config differ"
            frame = pd.read_csv(metrics)
            steps = frame["env_step"].to_numpy(dtype=float)
            assert np.all(np.diff(steps) > 0), f"{metrics}: env steps not increasing"
            success = frame.get("eval_success_rate")
            scores = success if success is not None and success.notna().all() else frame["eval_return_mean"]
            folders = metrics.parent.relative_to(root).parts[:-1]
            runs.append(RunData(metrics.parent, task, group, seed, steps, scores.to_numpy(float), folders))
    assert runs, f"no run directories under {dirs}"
    return tuple(sorted(runs, key=lambda run: (run.task, run.group, run.seed)))


def task_runs(runs: tuple[RunData, ...], task: str) -> list[RunData]:
    return [run for run in runs if run.task == task]


def group_runs(runs: tuple[RunData, ...], task: str, group: str) -> list[RunData]:
    """The runs of ``group`` on ``task``; a group `SWEEP/GROUP` keeps those in a directory named SWEEP (a study
    whose arms are sweeps of their own, each with runs named `Hopper-v5__ace__s0`)."""
    sweep, _, name = group.rpartition("/")
    return [run for run in runs if run.task == task and run.group == name and (not sweep or sweep in run.folders)]


def span(runs: tuple[RunData, ...], task: str) -> tuple[float, float]:
    """(first env step every run of the task has evaluated, last env step every run of the task reached)."""
    of_task = task_runs(runs, task)
    return max(run.steps[0] for run in of_task), min(run.steps[-1] for run in of_task)


def final_of(run: RunData, end: float) -> float:
    return float(np.interp(end, run.steps, run.scores))


def auc_of(run: RunData, start: float, end: float) -> float:
    inside = (run.steps > start) & (run.steps < end)
    xs = np.concatenate([[start], run.steps[inside], [end]])
    ys = np.interp(xs, run.steps, run.scores)
    return float(np.trapezoid(ys, xs) / (end - start))


def best_of(run: RunData, end: float) -> float:
    return float(run.scores[run.steps <= end].max())


def per_run(runs: tuple[RunData, ...], task: str, group: str, metric: str) -> np.ndarray:
    start, end = span(runs, task)
    chosen = group_runs(runs, task, group)
    assert chosen, f"no runs of {group} on {task}"
    if metric == "final":
        return np.array([final_of(run, end) for run in chosen])
    if metric == "auc":
        return np.array([auc_of(run, start, end) for run in chosen])
    assert metric == "best", metric
    return np.array([best_of(run, end) for run in chosen])


def bootstrap(scores: object, function: object) -> tuple[float, float, float]:
    """rliable's point estimate and 95 % percentile interval, NumPy's global generator seeded with SEED."""
    from rliable import library

    state = np.random.get_state()
    np.random.seed(SEED)
    try:
        point, interval = library.get_interval_estimates(
            {"x": scores}, function, reps=REPS, confidence_interval_size=CONFIDENCE
        )
    finally:
        np.random.set_state(state)
    low, high = np.ravel(interval["x"])
    return float(np.ravel(point["x"])[0]), float(low), float(high)


@functools.cache
def iqm_of(values: tuple[float, ...]) -> tuple[float, float, float]:
    """The IQM of one group's per-run values with its interval (cached by the values: tables repeat groups)."""
    from rliable import metrics

    array = np.array(values)
    point, low, high = bootstrap(array[:, None], lambda s: np.array([metrics.aggregate_iqm(s)]))
    assert point == pytest.approx(float(trim_mean(array, 0.25)))
    return float(trim_mean(array, 0.25)), low, high


def pairwise_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) of one task's (runs, 1) scores: the share of pairs in which the run of X scores higher, ties
    counted half (rliable's probability_of_improvement, the Mann-Whitney U statistic over n * m, vectorised: it
    calls scipy for every bootstrap resample, 20 times slower)."""
    x, y = x[:, 0][:, None], y[:, 0][None, :]
    return float(np.mean((x > y) + 0.5 * (x == y)))


@functools.cache
def improvement_of(finals_x: tuple[float, ...], finals_y: tuple[float, ...]) -> tuple[float, float, float]:
    """P(X > Y) of two groups' final scores with its interval: rliable's point estimate, and its stratified
    bootstrap of the same statistic (the resamples depend on the seed only, not on the statistic)."""
    from rliable import metrics

    x, y = np.array(finals_x)[:, None], np.array(finals_y)[:, None]
    point = float(metrics.probability_of_improvement(x, y))
    assert pairwise_improvement(x, y) == pytest.approx(point)
    _, low, high = bootstrap((x, y), pairwise_improvement)
    return point, low, high


def iqm_interval(root: Path, dirs: tuple[str, ...], task: str, group: str, metric: str) -> tuple[float, float, float]:
    return iqm_of(tuple(per_run(load_runs(root, dirs), task, group, metric)))


def improvement(root: Path, dirs: tuple[str, ...], task: str, x: str, y: str) -> tuple[float, float, float]:
    runs = load_runs(root, dirs)
    return improvement_of(tuple(per_run(runs, task, x, "final")), tuple(per_run(runs, task, y, "final")))


def curve_iqm(runs: tuple[RunData, ...], task: str, group: str, step: float) -> float:
    chosen = group_runs(runs, task, group)
    assert all(run.steps[0] <= step <= run.steps[-1] for run in chosen), f"{step} outside {group}'s runs on {task}"
    return float(trim_mean([np.interp(step, run.steps, run.scores) for run in chosen], 0.25))


# ---------------------------------------------------------------------------------------- the documents


@dataclass
class Block:
    """A table or a paragraph of a document (consecutive non-blank lines outside code blocks)."""

    path: Path
    line: int  # 1-based, of the block's first line
    lines: list[str]
    marker: tuple[str, str] | None  # (kind, arguments) of the marker right before it
    mention: str | None  # the last `benchmarks/results/...` mentioned before it in its section

    @property
    def is_table(self) -> bool:
        return self.lines[0].startswith("|")

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    @property
    def text(self) -> str:
        return " ".join(self.lines)


def blocks(path: Path) -> Iterator[Block]:
    """The document's tables and paragraphs, each with the marker comment before it (blank lines between them
    allowed) and the latest results path mentioned in its section (from a heading, or a paragraph that opens in
    bold); code blocks and headings are skipped."""
    lines = path.read_text().splitlines()
    marker: tuple[str, str] | None = None
    mention: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.lstrip().startswith("```"):
            index += 1
            while index < len(lines) and not lines[index].lstrip().startswith("```"):
                index += 1
            index += 1
            marker = None
            continue
        if line.startswith("#"):
            mention, marker = None, None
            index += 1
            continue
        found = MARKER.match(line.strip())
        if found:
            marker = (found.group(1), found.group(2))
            index += 1
            continue
        if not line.strip():
            index += 1
            continue
        start = index
        is_table = line.startswith("|")
        while (
            index < len(lines)
            and lines[index].strip()
            and lines[index].startswith("|") == is_table
            and not lines[index].lstrip().startswith("```")
            and not lines[index].startswith("#")
            and not MARKER.match(lines[index].strip())
        ):
            index += 1
        if line.startswith("**"):
            mention = None  # a paragraph that opens with bold text is a heading of its own (the README's)
        block = Block(path, start + 1, lines[start:index], marker, mention)
        yield block
        marker = None
        mentions = RESULTS_MENTION.findall(block.text)
        if mentions:
            mention = mentions[-1]


def marker_arguments(text: str) -> dict[str, str]:
    arguments = dict(token.split("=", 1) for token in text.split())
    assert "dirs" in arguments, f"a recompute marker names its run directories (dirs=...): {text}"
    return arguments


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def number(text: str) -> tuple[float, int]:
    """A printed number and the decimals it is printed with."""
    assert re.fullmatch(NUMBER, text), f"not a number: {text!r}"
    return float(text.replace(",", "")), len(text.split(".")[1]) if "." in text else 0


def matches(value: float, text: str) -> bool:
    """Whether ``value`` rounds to the printed ``text`` at its precision."""
    printed, decimals = number(text)
    return abs(value - printed) <= 0.5 * 10.0**-decimals + 1e-9 * max(1.0, abs(value))


def interval_problems(where: str, what: str, estimate: tuple[float, float, float], texts: tuple[str, ...]) -> list[str]:
    names = ("point estimate", "CI low", "CI high")
    return [
        f"{where}: {what} {name} is {value:.4g} recomputed, {text} printed"
        for name, value, text in zip(names, estimate, texts)
        if not matches(value, text)
    ]


def column_kind(header: str, tasks: set[str]) -> tuple[str, str | float | None]:
    """What a table column holds, from its header."""
    lower = header.lower().replace("`", "")
    curve = CURVE_STEP.fullmatch(lower)
    if curve:
        return "curve", float(curve.group(1)) * 1000
    if header in tasks:
        return "final-of-task", header
    if "seeds" in lower and "final" in lower:
        return "seed-finals", None
    if lower == "seeds":
        return "seeds", None
    if "auc" in lower or "area under" in lower or "mean height" in lower:
        return "auc", None
    if "best" in lower:
        return "best", None
    if "normalised" in lower:
        return "normalised", None
    if "final" in lower:
        return "final", None
    return "label", None


def header_steps(header: str) -> list[float]:
    """The env steps a header names (`final return at 22,000`, `AUC (mean height 2,000-22,000)`)."""
    return [number(text)[0] for text in re.findall(r"\d{1,3}(?:,\d{3})+", header)]


def check_table(root: Path, block: Block) -> list[str]:
    """Every number of a table marked `recompute`, against its runs; the problems found (empty: all match)."""
    assert block.marker is not None and block.marker[0] == "recompute"
    arguments = marker_arguments(block.marker[1])
    dirs = tuple(arguments["dirs"].split(","))
    runs = load_runs(root, dirs)
    groups = arguments["rows"].split(",")
    tasks = {run.task for run in runs}
    header, separator, *rows = block.lines
    assert set(separator.replace("|", "").strip()) <= {"-", ":", " "}, f"{block.where}: not a table"
    headers = cells(header)
    assert len(rows) == len(groups), f"{block.where}: {len(rows)} rows, the marker names {len(groups)} groups"
    problems: list[str] = []
    checked = 0
    for offset, (row, group) in enumerate(zip(rows, groups)):
        where = f"{block.where} (row {offset + 1}, {group})"
        for column, (title, cell) in enumerate(zip(headers, cells(row))):
            kind, argument = column_kind(title, tasks)
            task = arguments.get("task") if kind != "final-of-task" else str(argument)
            if column == 0 or kind == "label":
                assert column == 0 or not re.search(r"\d", cell), f"{where}: column {title!r} is not checked"
                continue
            assert task is not None, f"{block.where}: the marker names no task= and {title!r} is not a task"
            if cell == "not run":
                if group_runs(runs, task, group):
                    problems.append(f"{where}: {task} says 'not run', but there are runs")
                checked += 1
                continue
            if kind == "seeds":
                count = int(re.fullmatch(r"(\d+)(?: \(<\d+\))?", cell).group(1))  # type: ignore[union-attr]
                if count != len(group_runs(runs, task, group)):
                    problems.append(f"{where}: {count} seeds printed, {len(group_runs(runs, task, group))} runs")
                checked += 1
            elif kind == "seed-finals":
                values = per_run(runs, task, group, "final")
                texts = cell.split(", ")
                if len(texts) != len(values):
                    problems.append(f"{where}: {len(texts)} finals printed, {len(values)} runs")
                problems += [
                    f"{where}: seed {run.seed}'s final is {value:.4g} recomputed, {text} printed"
                    for run, value, text in zip(group_runs(runs, task, group), values, texts)
                    if not matches(value, text)
                ]
                checked += len(texts)
            elif kind == "curve":
                value = curve_iqm(runs, task, group, float(argument))  # type: ignore[arg-type]
                if not matches(value, cell):
                    problems.append(f"{where}: IQM at {argument:,.0f} is {value:.4g} recomputed, {cell} printed")
                checked += 1
            elif kind in ("final", "final-of-task", "auc", "best"):
                metric = "final" if kind == "final-of-task" else kind
                start, end = span(runs, task)
                steps = header_steps(title)
                expected = [end] if metric in ("final", "best") else [start, end]
                if steps and steps != expected:
                    problems.append(f"{where}: header {title!r} names env steps {steps}, the runs give {expected}")
                found = INTERVAL.fullmatch(cell)
                assert found, f"{where}: {title!r} is not 'IQM [low, high]': {cell!r}"
                estimate = iqm_interval(root, dirs, task, group, metric)
                problems += interval_problems(where, f"{task} {metric} IQM", estimate, found.groups())
                checked += 3
            else:
                raise AssertionError(f"{where}: column {title!r} ({kind}) cannot be recomputed here")
    assert checked, f"{block.where}: nothing checked"
    return problems


def check_text(root: Path, block: Block) -> list[str]:
    """Every interval of a paragraph marked `recompute-text`, in order, against the claims its marker lists."""
    assert block.marker is not None and block.marker[0] == "recompute-text"
    arguments = marker_arguments(block.marker[1])
    dirs = tuple(arguments["dirs"].split(","))
    claims = arguments["claims"].split(",")
    found = INTERVAL.findall(block.text)
    if len(found) != len(claims):
        return [f"{block.where}: {len(found)} intervals in the text, the marker lists {len(claims)} claims"]
    problems = []
    for claim, texts in zip(claims, found):
        parsed = CLAIM.fullmatch(claim)
        assert parsed, f"{block.where}: cannot read the claim {claim!r}"
        task, metric, x, y = parsed.group("task", "metric", "x", "y")
        if metric == "P":
            assert y, f"{block.where}: {claim} needs P(X>Y)"
            estimate = improvement(root, dirs, task, x, y)
        else:
            estimate = iqm_interval(root, dirs, task, x, metric)
        problems += interval_problems(block.where, claim, estimate, texts)
    return problems


def marked(kind: str) -> list[Block]:
    return [block for path in DOCS for block in blocks(path) if block.marker and block.marker[0] == kind]


def marked_with(kind: str, fragment: str) -> Block:
    """The first block marked ``kind`` whose marker contains ``fragment``."""
    return next(block for block in marked(kind) if block.marker is not None and fragment in block.marker[1])


def holds_runs(path: str) -> bool:
    directory = REPO / path
    return directory.is_dir() and any(directory.rglob("metrics.csv"))


# ------------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("block", marked("recompute"), ids=lambda block: block.where)
def test_table_is_recomputed_from_its_runs(block: Block) -> None:
    assert block.is_table, f"{block.where}: a recompute marker stands right before a table"
    assert check_table(REPO, block) == []


@pytest.mark.parametrize("block", marked("recompute-text"), ids=lambda block: block.where)
def test_text_intervals_are_recomputed_from_their_runs(block: Block) -> None:
    assert not block.is_table, f"{block.where}: a recompute-text marker stands right before a paragraph"
    assert check_text(REPO, block) == []


def test_the_markers_are_found() -> None:
    """The checks above do not pass by finding nothing: the documents' result tables are marked."""
    tables = marked("recompute")
    assert {block.path.name for block in tables} == {"README.md", "benchmarks.md", "algorithm.md"}
    assert len(tables) >= 9
    assert len(marked("recompute-text")) >= 8


def test_every_result_table_and_interval_is_marked() -> None:
    """A table or paragraph that prints an interval, and a table after a mention of a results directory that holds
    runs, is marked: recomputed from its runs, or said not recomputable (where the directory holds no runs)."""
    unmarked = []
    for path in DOCS:
        for block in blocks(path):
            if block.marker is not None:
                if block.marker[0] == "not recomputable":
                    named = RESULTS_MENTION.findall(block.marker[1])
                    assert named, f"{block.where}: a not-recomputable marker names its results directory"
                    for directory in named:
                        assert (REPO / directory).is_dir(), f"{block.where}: {directory} does not exist"
                        assert not holds_runs(directory), f"{block.where}: {directory} holds runs: recompute it"
                continue
            after_runs = block.is_table and block.mention is not None and holds_runs(block.mention)
            if INTERVAL.search(block.text) or after_runs:
                unmarked.append(f"{block.where}: {block.lines[0][:80]}")
    assert unmarked == []


def test_the_improvement_interval_is_rliables() -> None:
    """The vectorised P(X > Y) gives the interval that rliable's own probability_of_improvement gives."""
    from rliable import metrics

    runs = load_runs(REPO, ("benchmarks/results/sb3_baselines",))
    finals = [per_run(runs, "Hopper-v5", group, "final")[:, None] for group in ("td3", "sb3-td3")]
    assert bootstrap(tuple(finals), metrics.probability_of_improvement) == pytest.approx(
        bootstrap(tuple(finals), pairwise_improvement)
    )


# ------------------------------------------------------------------------------------- the check can fail

TD3_TABLE = "| TD3 | seeds 0-4, final | final IQM [95 % CI] |"


def copy_runs(source: Path, target: Path, names: list[str]) -> None:
    for name in names:
        (target / name).mkdir(parents=True)
        for file in ("metrics.csv", "config.json"):
            shutil.copy(source / name / file, target / name / file)


def test_a_perturbed_evaluation_is_reported(tmp_path: Path) -> None:
    """The same table against a copy of its runs in which one evaluation differs: the checker names it."""
    source = REPO / "benchmarks" / "results" / "sb3_baselines"
    results = tmp_path / "benchmarks" / "results" / "sb3_baselines"
    copy_runs(source, results, [f"Hopper-v5__{impl}__s{seed}" for impl in ("td3", "sb3-td3") for seed in range(5)])
    block = marked_with("recompute", "task=Hopper-v5 rows=td3,sb3-td3")
    lines = [block.lines[0].split("|")[:4], block.lines[1].split("|")[:4]]
    lines += [row.split("|")[:4] for row in block.lines[2:]]
    block = Block(block.path, block.line, ["|".join(cells) + "|" for cells in lines], block.marker, None)
    assert check_table(tmp_path, block) == []  # the copy as it is matches

    metrics = results / "Hopper-v5__td3__s2" / "metrics.csv"
    frame = pd.read_csv(metrics)
    frame.loc[frame.index[-1], "eval_return_mean"] += 100  # seed 2's last evaluation, 309 -> 409
    frame.to_csv(metrics, index=False)
    load_runs.cache_clear()
    problems = check_table(tmp_path, block)
    assert any("seed 2's final" in problem and "309 printed" in problem for problem in problems), problems
    assert any("final IQM point estimate" in problem for problem in problems), problems


def test_a_group_qualified_by_its_sweep_takes_that_sweeps_runs(tmp_path: Path) -> None:
    """Two sweeps whose runs have the same names (`Hopper-v5__td3__s0`, ...), one of them shifted by 1,000: the
    qualified groups `one/td3` and `two/td3` are told apart, the bare group `td3` mixes them."""
    source = REPO / "benchmarks" / "results" / "sb3_baselines"
    names = [f"Hopper-v5__td3__s{seed}" for seed in range(5)]
    study = tmp_path / "study"
    copy_runs(source, study / "one", names)
    copy_runs(source, study / "two", names)
    for name in names:
        metrics = study / "two" / name / "metrics.csv"
        frame = pd.read_csv(metrics)
        frame["eval_return_mean"] += 1000
        frame.to_csv(metrics, index=False)
    runs = load_runs(tmp_path, ("study",))
    one = per_run(runs, "Hopper-v5", "one/td3", "final")
    two = per_run(runs, "Hopper-v5", "two/td3", "final")
    independent = [float(pd.read_csv(source / name / "metrics.csv")["eval_return_mean"].iloc[-1]) for name in names]
    assert one == pytest.approx(independent) and two == pytest.approx(np.array(independent) + 1000)
    assert len(group_runs(runs, "Hopper-v5", "td3")) == 10
    assert group_runs(runs, "Hopper-v5", "three/td3") == []


def test_a_changed_number_is_reported() -> None:
    """A documented table and paragraph with one number changed: the checker reports that number."""
    table = marked_with("recompute", "task=HalfCheetah-v5 rows=sac-pf1")
    changed = [line.replace("1,312 [952, 1,850]", "1,312 [952, 1,950]") for line in table.lines]
    assert changed != table.lines
    problems = check_table(REPO, Block(table.path, table.line, changed, table.marker, None))
    assert len(problems) == 1 and "auc IQM CI high" in problems[0] and "1,950 printed" in problems[0], problems

    text = marked_with("recompute-text", "P(")
    first = INTERVAL.search(text.text)
    assert first is not None
    point = first.group(1)
    wrong = f"{float(point.replace(',', '')) + 1:,.{number(point)[1]}f}"
    changed = [line.replace(first.group(0), first.group(0).replace(point, wrong, 1), 1) for line in text.lines]
    problems = check_text(REPO, Block(text.path, text.line, changed, text.marker, None))
    assert len(problems) == 1 and "point estimate" in problems[0], problems
