"""The report's judgement of the runs: per task, where runs are compared and each group's scores; across tasks,
which labels and tasks enter the aggregates and what they give. Every function returns the notes it makes: the
report's notes are these, in order, and nothing else adds to them."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ace_rl.report.libraries import ReportError, libraries
from ace_rl.report.paper import PlanReference, plan_reference
from ace_rl.report.runs import (
    ALGO_ORDER,
    Group,
    RunRecord,
    collect_runs,
    duplicate_seeds_note,
    fits_causal_weights,
    group_runs,
    run_equals_sac,
)
from ace_rl.report.stats import (
    Aligned,
    Curve,
    Estimate,
    align,
    improvement_estimate,
    iqm_curve,
    iqm_curves,
    iqm_estimate,
    metric_estimates,
    performance_profiles,
    run_auc,
    run_best,
    run_final,
)
from ace_rl.report.text import listing, steps_text
from ace_rl.scores import Normalisation, normalisation

SEED_RANGE = (0, 2**32 - 1)
"""The bootstrap seeds NumPy's global generator accepts."""
SUBSET_SEARCH_LIMIT = 12
"""The aggregates try every subset of the labels (or, with more labels, of the tasks) up to this many."""


@dataclass
class GroupResult:
    group: Group
    aligned: Aligned
    curve: Curve
    compared: list[RunRecord]
    """The group's runs that reach the task's comparison step (all of them, unless runs cover disjoint steps)."""
    finals: np.ndarray
    """Each compared run's score at the task's comparison step, raw units, in seed order."""
    final: Estimate | None
    """None where no run of the group reaches the comparison step (likewise the three below)."""
    final_normalised: Estimate | None
    auc: Estimate | None
    best: Estimate | None
    causal_runs: list[RunRecord] = field(default_factory=list)
    """The runs whose causal weights the group's causal-weight figure draws; empty: the group has no such figure."""
    causal_note: str | None = None
    """Why a group whose runs fit causal weights has no causal-weight figure."""


@dataclass
class TaskResult:
    name: str
    env: str
    score_name: str
    """"success rate" or "return"."""
    normalisation: Normalisation | None
    start_step: float
    """The first env step that every compared run has evaluated (inside its range): AUCs start here."""
    comparison_step: float
    """The last env step that every run of the task reached (where runs cover disjoint steps: the latest step
    that the most runs cover): final scores, AUCs and bests are taken up to it."""
    groups: list[GroupResult]

    @property
    def success(self) -> bool:
        return self.score_name == "success rate"


@dataclass
class Improvement:
    x: str
    y: str
    tasks: list[str]
    runs_x: int
    runs_y: int
    estimate: Estimate


@dataclass
class AggregateResult:
    tasks: list[str]
    labels: list[str]
    scores: dict[str, np.ndarray]
    """Per label, (runs, tasks) normalised final scores."""
    metrics: dict[str, list[Estimate]]
    """Per label: IQM, median, mean, optimality gap."""
    curve: dict[str, Curve]
    taus: np.ndarray
    profiles: dict[str, np.ndarray]
    profile_intervals: dict[str, np.ndarray]
    improvements: list[Improvement]


@dataclass
class Report:
    inputs: list[Path]
    runs: list[RunRecord]
    tasks: list[TaskResult]
    aggregate: AggregateResult | None
    notes: list[str]
    reps: int
    seed: int
    figures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """The notes the command also prints: runs left out that the user should look at."""
    plan: PlanReference | None = None
    """The plan the runs' sweep was made from (--plan): the table beside its reference and a figure per domain."""


# ------------------------------------------------------------------------------------------------ per task


def comparison_step(runs: Sequence[RunRecord]) -> tuple[float, list[RunRecord]]:
    """The env step at which a task's runs are compared, and the runs that reach it: the last step that every
    run reached; where runs cover disjoint stretches of env steps, the latest step that the most runs cover."""
    steps = np.unique(np.concatenate([run.eval_steps for run in runs]))
    covering = np.array([sum(run.eval_steps[0] <= step <= run.eval_steps[-1] for run in runs) for step in steps])
    step = float(steps[np.flatnonzero(covering == covering.max())[-1]])
    return step, [run for run in runs if run.eval_steps[0] <= step <= run.eval_steps[-1]]


def _coverage_notes(
    name: str, runs: Sequence[RunRecord], compared: Sequence[RunRecord], start: float, end: float
) -> list[str]:
    """What the task's final scores, AUCs and bests leave out, and which runs are unfinished."""
    notes = []
    left_out = [run for run in runs if run not in compared]
    if left_out:
        spans = [
            f"{run.path.name} ({steps_text(run.eval_steps[0])}-{steps_text(run.eval_steps[-1])})" for run in left_out
        ]
        notes.append(
            f"{name}: no env step lies within every run's evaluations; final scores, AUC and best are taken at env "
            f"step {steps_text(end)}, the latest step that the most runs ({len(compared)} of {len(runs)}) cover, and "
            f"leave out {listing(spans)}, which appear in the learning curves only."
        )
    longer = [run for run in compared if run.eval_steps[-1] > end]
    if longer and not left_out:
        notes.append(
            f"{name}: final scores, AUC and best are taken up to env step {steps_text(end)}, the last step every run "
            f"of the task reached; {len(longer)} of {len(runs)} runs went further (up to "
            f"{steps_text(max(run.eval_steps[-1] for run in longer))}), and their later evaluations appear in the "
            "learning curves only."
        )
    unfinished = [run for run in runs if run.eval_steps[-1] < run.config.get("total_steps", 0)]
    if unfinished:
        reached = [f"{run.path.name} at {steps_text(run.eval_steps[-1])}" for run in unfinished]
        notes.append(
            f"{name}: {len(unfinished)} of {len(runs)} runs have not reached their total_steps (still running, or "
            f"stopped early): {listing(reached)}."
        )
    if start > min(float(run.eval_steps[0]) for run in compared):
        notes.append(
            f"{name}: AUC starts at env step {steps_text(start)}, the first evaluation every compared run has."
        )
    return notes


def _alignment_notes(name: str, group: Group, aligned: Aligned) -> list[str]:
    """Where the group's curve interpolates, and where it rests on fewer than all its runs."""
    notes = []
    interpolated = int(aligned.interpolated.sum())
    if interpolated:
        notes.append(
            f"{name} / {group.label}: the runs were evaluated at different env steps; {interpolated} of "
            f"{int((~np.isnan(aligned.values)).sum())} curve values were interpolated linearly between a run's "
            "own evaluations (none extrapolated)."
        )
    partial = aligned.runs_per_step < len(group.runs)
    if partial.any():
        notes.append(
            f"{name} / {group.label}: the runs cover different env steps; {int(partial.sum())} of "
            f"{len(aligned.steps)} curve points rest on fewer than all {len(group.runs)} runs (dashed in the "
            "figure; curves.csv gives each point's run count)."
        )
    return notes


def causal_figure_runs(task: str, group: Group) -> tuple[list[RunRecord], str | None]:
    """The runs whose causal weights the group's causal-weight figure draws (none: no figure), and, where a
    figure is missing that the group's algorithm would have, a note saying why."""
    fitted = [run for run in group.runs if len(run.causal_steps) and run.causal_weights.shape[1]]
    if not fitted:
        if fits_causal_weights(group.runs[0].config):
            return [], f"{task} / {group.label}: no causal fit recorded yet, so no causal-weight figure."
        return [], None
    dimensions = {run.causal_weights.shape[1] for run in fitted}
    if len(dimensions) > 1:
        sizes = sorted(dimensions)
        return [], f"{task} / {group.label}: runs have different action sizes {sizes}; no causal-weight figure."
    return fitted, None


def analyse_task(name: str, groups: Sequence[Group], reps: int, seed: int) -> tuple[TaskResult, list[str]]:
    """Each group's learning curve and its final, AUC and best IQMs at the task's comparison step, and the notes
    on what they rest on."""
    runs = [run for group in groups for run in group.runs]
    with_success = [run.success_rates is not None for run in runs]
    if any(with_success) and not all(with_success):
        without = ", ".join(str(run.path) for run, has in zip(runs, with_success) if not has)
        raise ReportError(f"task {name}: some runs report a success rate and others do not ({without})")
    success = all(with_success)
    norm = normalisation(str(runs[0].config["env"]), success)
    end, compared = comparison_step(runs)
    start = max(float(run.eval_steps[0]) for run in compared)
    notes = _coverage_notes(name, runs, compared, start, end)

    results = []
    for group in groups:
        aligned = align([run.eval_steps for run in group.runs], [run.scores(success) for run in group.runs])
        notes += _alignment_notes(name, group, aligned)
        pairs = [(run, run.scores(success)) for run in group.runs if run in compared]
        finals = np.array([run_final(run.eval_steps, s, end) for run, s in pairs])
        aucs = np.array([run_auc(run.eval_steps, s, start, end) for run, s in pairs])
        bests = np.array([run_best(run.eval_steps, s, end) for run, s in pairs])
        has_runs = len(pairs) > 0
        causal_runs, causal_note = causal_figure_runs(name, group)
        results.append(
            GroupResult(
                group=group,
                aligned=aligned,
                curve=iqm_curve(aligned, reps, seed),
                compared=[run for run, _ in pairs],
                finals=finals,
                final=iqm_estimate(finals, reps, seed) if has_runs else None,
                final_normalised=iqm_estimate(norm(finals), reps, seed) if has_runs and norm is not None else None,
                auc=iqm_estimate(aucs, reps, seed) if has_runs else None,
                best=iqm_estimate(bests, reps, seed) if has_runs else None,
                causal_runs=causal_runs,
                causal_note=causal_note,
            )
        )
    score_name = "success rate" if success else "return"
    return TaskResult(name, str(runs[0].config["env"]), score_name, norm, start, end, results), notes


# ---------------------------------------------------------------------------------------------- across tasks


def _label_results(label: str, tasks: Sequence[TaskResult]) -> tuple[list[GroupResult], int]:
    """The label's group on each task, and the fewest runs any of them has."""
    chosen = [next(r for r in task.groups if r.group.label == label and r.final is not None) for task in tasks]
    return chosen, min(len(r.compared) for r in chosen)


def _normalised(task: TaskResult, scores: np.ndarray) -> np.ndarray:
    assert task.normalisation is not None, "only tasks with a reference score enter the aggregates"
    return task.normalisation(scores)


def _normalised_finals(tasks: Sequence[TaskResult], results: Sequence[GroupResult], runs: int) -> np.ndarray:
    """(runs, tasks): the normalised final scores of the first ``runs`` compared runs of each task's group."""
    return np.stack([_normalised(task, result.finals[:runs]) for task, result in zip(tasks, results)], axis=1)


def aggregate_selection(
    tasks: Sequence[TaskResult], labels: Sequence[str], present: Mapping[str, set[str]]
) -> tuple[list[str], list[TaskResult]]:
    """The labels and tasks of the aggregates, which compare labels on the same tasks: of the sets of labels
    (with the tasks on which all of them have runs), the one covering the most (label, task) pairs; ties go to
    more labels (aggregates are for comparing), then to more tasks. With more than SUBSET_SEARCH_LIMIT labels,
    the candidates are the labels that subsets of the tasks have in common (every subset up to that many tasks,
    else each task's own labels)."""
    if len(labels) <= SUBSET_SEARCH_LIMIT:
        subsets = [s for size in range(len(labels), 0, -1) for s in itertools.combinations(labels, size)]
    else:
        if len(tasks) <= SUBSET_SEARCH_LIMIT:
            task_sets = [c for size in range(len(tasks), 0, -1) for c in itertools.combinations(tasks, size)]
        else:
            task_sets = [(task,) for task in tasks]
        subsets = [
            tuple(label for label in labels if all(label in present[t.name] for t in task_set))
            for task_set in task_sets
        ]
    best: tuple[list[str], list[TaskResult]] = ([], [])
    best_key = (0, 0, 0)
    for subset in subsets:
        common = [task for task in tasks if set(subset) <= present[task.name]]
        key = (len(subset) * len(common), len(subset), len(common))
        if key > best_key:
            best_key, best = key, (list(subset), common)
    return best


def improvements(
    tasks: Sequence[TaskResult], labels: Sequence[str], algo_of: Mapping[str, str], reps: int, seed: int
) -> tuple[list[Improvement], list[str]]:
    """P(X > Y) for each label X of the leading algorithm (ACE when the report has it, else the first in the
    report's order) and every other label Y, over the tasks both have (paired); and notes on the pairs that
    share no task."""
    if not labels:
        return [], []
    lead = "ace" if "ace" in algo_of.values() else algo_of[labels[0]]
    lead_labels = [label for label in labels if algo_of[label] == lead]
    pairs = [
        (x, y)
        for x in lead_labels
        for y in labels
        if y != x and not (algo_of[y] == lead and labels.index(y) < labels.index(x))
    ]
    found, notes = [], []
    for x, y in pairs:
        paired = [task for task in tasks if {x, y} <= {r.group.label for r in task.groups if r.final is not None}]
        if not paired:
            notes.append(f"{x} and {y} share no task with a reference score: no probability of improvement.")
            continue
        chosen_x, runs_x = _label_results(x, paired)
        chosen_y, runs_y = _label_results(y, paired)
        estimate = improvement_estimate(
            _normalised_finals(paired, chosen_x, runs_x), _normalised_finals(paired, chosen_y, runs_y), reps, seed
        )
        found.append(Improvement(x, y, [t.name for t in paired], runs_x, runs_y, estimate))
    return found, notes


def _left_out_notes(
    labels: Sequence[str],
    chosen: Sequence[str],
    tasks: Sequence[TaskResult],
    common: Sequence[TaskResult],
    present: Mapping[str, set[str]],
) -> list[str]:
    """Which labels and tasks the aggregates leave out, and why."""
    notes = []
    for label in labels:
        if label not in chosen:
            lacking = [task.name for task in common if label not in present[task.name]]
            notes.append(
                f"{label} is left out of the aggregate metrics, the sample-efficiency curve and the performance "
                f"profile: it has no runs on {', '.join(lacking)} (it still enters the probability of improvement on "
                "the tasks it shares)."
            )
    for task in tasks:
        if task not in common:
            missing = [label for label in chosen if label not in present[task.name]]
            notes.append(
                f"{task.name} is left out of the aggregate metrics, the sample-efficiency curve and the performance "
                f"profile: it has no runs of {', '.join(missing)} (it still enters the probability of improvement "
                "of the pairs it has)."
            )
    return notes


def analyse_aggregate(tasks: Sequence[TaskResult], reps: int, seed: int) -> tuple[AggregateResult | None, list[str]]:
    """Across tasks with a normalisation and runs of every label: the aggregate metrics, the sample-efficiency
    curve, the performance profile; and the probability of improvement of each ACE label (or of the leading
    algorithm's, without ACE) over the others. With the notes on what is left out of them."""
    notes = []
    without = [task.name for task in tasks if task.normalisation is None]
    if without:
        notes.append(
            f"No reference score for {', '.join(without)}: these tasks are in the per-task table and figures only, "
            "not in the aggregates."
        )
    normalised = [task for task in tasks if task.normalisation is not None]
    if not normalised:
        notes.append("No task has a reference score, so there are no aggregate metrics across tasks.")
        return None, notes
    labels: list[str] = []
    for task in normalised:
        labels.extend(r.group.label for r in task.groups if r.group.label not in labels)
    labels.sort(key=lambda label: (ALGO_ORDER.get(label.split()[0], len(ALGO_ORDER)), label))
    algo_of = {r.group.label: r.group.algo for task in normalised for r in task.groups}
    present = {task.name: {r.group.label for r in task.groups if r.final is not None} for task in normalised}
    pairs, pair_notes = improvements(normalised, labels, algo_of, reps, seed)
    notes += pair_notes
    chosen, common = aggregate_selection(normalised, labels, present)
    if not chosen:
        notes.append("No group has a final score on a task with a reference score: no aggregate metrics across tasks.")
        return None, notes
    notes += _left_out_notes(labels, chosen, normalised, common, present)

    start = max(task.start_step for task in common)
    end = min(task.comparison_step for task in common)
    grid = np.unique(
        np.concatenate(
            [run.eval_steps for task in common for r in task.groups if r.group.label in chosen for run in r.compared]
        )
    )
    grid = grid[(grid >= start) & (grid <= end)]
    if len({task.comparison_step for task in common}) > 1:
        notes.append(
            f"The sample-efficiency curve runs to env step {steps_text(end)}, the earliest comparison step of the "
            "tasks in it (each task's final scores are still taken at its own comparison step)."
        )
    scores: dict[str, np.ndarray] = {}
    curve_scores: dict[str, np.ndarray] = {}
    for label in chosen:
        results, runs = _label_results(label, common)
        for task, result in zip(common, results):
            if len(result.compared) > runs:
                notes.append(
                    f"Aggregates of {label} use the {runs} lowest seeds of each task (the fewest any task has); "
                    f"{task.name} seeds {[run.seed for run in result.compared[runs:]]} enter its per-task numbers only."
                )
        scores[label] = _normalised_finals(common, results, runs)
        curve_scores[label] = np.stack(
            [
                _normalised(
                    task,
                    np.array(
                        [np.interp(grid, run.eval_steps, run.scores(task.success)) for run in result.compared[:runs]]
                    ),
                )
                for task, result in zip(common, results)
            ],
            axis=1,
        )
    estimates = metric_estimates(scores, reps, seed)
    curves = iqm_curves(curve_scores, grid, reps, seed)
    every = np.concatenate([s.ravel() for s in scores.values()])
    taus = np.linspace(min(0.0, float(every.min())), max(1.0, float(every.max())), 101)
    profiles, profile_intervals = performance_profiles(scores, taus, reps, seed)
    aggregate = AggregateResult(
        [task.name for task in common], chosen, scores, estimates, curves, taus, profiles, profile_intervals, pairs
    )
    return aggregate, notes


# ------------------------------------------------------------------------------------------------- report


def build_report(dirs: Sequence[Path], reps: int = 2000, seed: int = 0, skip_empty: bool = False) -> Report:
    """Read, group, align and judge the runs at or below ``dirs`` (no files written)."""
    if reps < 1:
        raise ReportError(f"--reps must be a positive integer, got {reps}")
    if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ReportError(
            f"--seed {seed} is out of range; accepted: an integer from {SEED_RANGE[0]} to {SEED_RANGE[1]} (2**32-1)"
        )
    libraries()  # a missing extra is reported before any work
    collected = collect_runs(dirs, skip_empty)
    notes, warnings = list(collected.notes), list(collected.warnings)
    by_task: dict[str, list[Group]] = defaultdict(list)
    for group in group_runs(collected.runs):
        by_task[group.task].append(group)
        if group.duplicates:
            notes.append(duplicate_seeds_note(group))
            warnings.append(notes[-1])
    counted = [run for groups in by_task.values() for group in groups for run in group.runs]
    same_as_sac = [run for run in counted if run_equals_sac(run)]
    if same_as_sac:
        notes.append(
            f"{len(same_as_sac)} ACE run(s) make no causal fit and no reset within their budget, so they compute "
            f"exactly what SAC computes with their --policy-frequency: {listing([str(run.path) for run in same_as_sac])}."
        )
    tasks = []
    for name, groups in by_task.items():
        task, task_notes = analyse_task(name, groups, reps, seed)
        tasks.append(task)
        notes += task_notes
    aggregate, aggregate_notes = analyse_aggregate(tasks, reps, seed)
    notes += aggregate_notes
    notes += [result.causal_note for task in tasks for result in task.groups if result.causal_note]
    plan = plan_reference(counted)
    return Report(list(dirs), counted, tasks, aggregate, notes, reps, seed, warnings=warnings, plan=plan)
