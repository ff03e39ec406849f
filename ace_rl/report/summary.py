"""The report's text and tables: summary.md (per task, normalisation, across tasks, notes, figures), summary.csv
(every number of the summary with its interval and seed count) and curves.csv (every learning-curve point)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ace_rl.report.analysis import Report
from ace_rl.report.output import writing
from ace_rl.report.paper import reference_text
from ace_rl.report.stats import METRIC_NAMES, Curve, Estimate
from ace_rl.report.text import steps_text

FEW_SEEDS = 5
"""Groups with fewer seeds than this are flagged: their intervals rest on too few runs to be trusted."""
SUMMARY_COLUMNS = [
    "section",
    "task",
    "group",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "seeds",
    "tasks",
    "env_step",
    "unit",
    "few_seeds",
]
PAPER_COLUMNS = [
    "domain",
    "task",
    "group",
    "algo",
    "seeds",
    "final_iqm",
    "ci_low",
    "ci_high",
    "unit",
    "reference",
    "env_step",
    "plan_budget",
    "budget_percent",
    "budget_scale",
]


def _number(value: float, unit: str) -> str:
    if unit == "return" and abs(value) >= 100:
        return f"{value:,.0f}"
    if unit == "return":
        return f"{value:.1f}"
    return f"{value:.2f}"


def _interval(estimate: Estimate, unit: str) -> str:
    return f"{_number(estimate.value, unit)} [{_number(estimate.low, unit)}, {_number(estimate.high, unit)}]"


def _seeds_text(runs: int) -> str:
    return f"{runs} (<{FEW_SEEDS})" if runs < FEW_SEEDS else str(runs)


def summary_rows(report: Report) -> list[dict[str, Any]]:
    """One row per number of the summary, for summary.csv."""
    rows: list[dict[str, Any]] = []

    def add(
        section: str, task: str, group: str, metric: str, estimate: Estimate, tasks: int, step: Any, unit: str
    ) -> None:
        rows.append(
            dict(
                section=section,
                task=task,
                group=group,
                metric=metric,
                value=estimate.value,
                ci_low=estimate.low,
                ci_high=estimate.high,
                seeds=estimate.runs,
                tasks=tasks,
                env_step=step,
                unit=unit,
                few_seeds=estimate.runs < FEW_SEEDS,
            )
        )

    for task in report.tasks:
        for result in task.groups:
            name, label, step = task.name, result.group.label, task.comparison_step
            if result.final is None or result.auc is None or result.best is None:
                continue
            add("task", name, label, "final_iqm", result.final, 1, step, task.score_name)
            if result.final_normalised is not None:
                add("task", name, label, "final_iqm_normalised", result.final_normalised, 1, step, "normalised score")
            add("task", name, label, "auc_iqm", result.auc, 1, f"{task.start_step:g}-{step:g}", task.score_name)
            add("task", name, label, "best_iqm", result.best, 1, step, task.score_name)
    aggregate = report.aggregate
    if aggregate is not None:
        for label, estimates in aggregate.metrics.items():
            for metric, estimate in zip(METRIC_NAMES, estimates):
                add(
                    "aggregate",
                    " ".join(aggregate.tasks),
                    label,
                    metric.lower().replace(" ", "_"),
                    estimate,
                    len(aggregate.tasks),
                    "final",
                    "normalised score",
                )
        for improvement in aggregate.improvements:
            add(
                "probability_of_improvement",
                " ".join(improvement.tasks),
                f"{improvement.x} > {improvement.y}",
                "probability_of_improvement",
                improvement.estimate,
                len(improvement.tasks),
                "final",
                "probability",
            )
    return rows


def paper_rows(report: Report) -> list[dict[str, Any]]:
    """For a report of a plan's sweep: per task of the plan (in its order) and group, the final IQM with its
    interval beside the reference's value, and the env steps the runs reached (the task's comparison step, where
    the final is taken) against the plan's budget. A task of the plan without runs has one row without numbers."""
    if report.plan is None:
        return []
    results = {task.name: task for task in report.tasks}
    rows: list[dict[str, Any]] = []
    for reference in report.plan.tasks:
        task = results.get(reference.task)
        base = dict(domain=reference.domain, task=reference.task, plan_budget=reference.budget)
        if task is None:
            rows.append({**base, "group": "", "algo": "", "seeds": 0, "reference": None})
            continue
        for result in task.groups:
            scales = sorted({float(run.config.get("budget_scale", 1.0)) for run in result.group.runs})
            percent = None if not reference.budget else 100.0 * task.comparison_step / reference.budget
            final = result.final
            rows.append(
                {
                    **base,
                    "group": result.group.label,
                    "algo": result.group.algo,
                    "seeds": 0 if final is None else final.runs,
                    "final_iqm": None if final is None else final.value,
                    "ci_low": None if final is None else final.low,
                    "ci_high": None if final is None else final.high,
                    "unit": task.score_name,
                    "reference": reference.reference.get(result.group.algo),
                    "env_step": task.comparison_step,
                    "budget_percent": percent,
                    "budget_scale": " ".join(f"{scale:g}" for scale in scales),
                }
            )
    return rows


def _budget_text(row: dict[str, Any]) -> str:
    """`2 % (20,000 of 1,000,000 env steps; --budget-scale 0.02): not a reproduction`."""
    if row.get("budget_percent") is None:
        return f"{steps_text(row['env_step'])} env steps (the plan's budget is not known)"
    scale = "" if row["budget_scale"] == "1" else f"; --budget-scale {row['budget_scale']}"
    text = f"{row['budget_percent']:.3g} % ({row['env_step']:,.0f} of {row['plan_budget']:,} env steps{scale})"
    return text if row["budget_percent"] >= 100 else f"{text}: not a reproduction"


def paper_markdown(report: Report) -> list[str]:
    """summary.md's section beside the plan's reference, for a report of a plan's sweep."""
    plan = report.plan
    if plan is None:
        return []
    note = plan.note or "the plan's reference values"
    lines = [
        f"## Beside the plan's reference (plan {plan.name})",
        "",
        f"Per task of the plan, each algorithm's final IQM [95 % CI] beside the reference's final value ({note}), "
        "and the env steps the runs reached (where the final is taken) as a share of the plan's budget. A run "
        "short of the plan's budget is not a reproduction: its value is what it reached at that step, not at the "
        "reference's. Figures per domain: `plan_domain__*.png`; the same rows in `paper_table.csv`.",
        "",
        f"| domain | task | algorithm | seeds | final IQM [95% CI] | reference ({note}) | budget reached |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in paper_rows(report):
        if not row["group"]:
            budget = "-" if row["plan_budget"] is None else f"0 of {row['plan_budget']:,} env steps: no runs"
            lines.append(f"| {row['domain']} | {row['task']} | - | 0 | - | - | {budget} |")
            continue
        final = "-"
        if row["final_iqm"] is not None:
            unit = row["unit"]
            final = (
                f"{_number(row['final_iqm'], unit)} [{_number(row['ci_low'], unit)}, {_number(row['ci_high'], unit)}]"
            )
        lines.append(
            f"| {row['domain']} | {row['task']} | {row['group']} | {_seeds_text(row['seeds'])} | {final} | "
            f"{reference_text(row['reference'])} | {_budget_text(row)} |"
        )
    return lines


def write_summary(report: Report, out: Path) -> None:
    """summary.csv and summary.md; paper_table.csv for a report of a plan's sweep."""
    with writing(out / "summary.csv") as path, open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for row in summary_rows(report):
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    if report.plan is not None:
        with writing(out / "paper_table.csv") as path, open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=PAPER_COLUMNS, restval="")
            writer.writeheader()
            for row in paper_rows(report):
                value = row["reference"]  # a number, or "low-high" for a range
                row["reference"] = "-".join(f"{v:g}" for v in value) if isinstance(value, list) else value
                writer.writerow(
                    {k: "" if v is None else f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()}
                )
    with writing(out / "summary.md") as path:
        path.write_text(summary_markdown(report))


def _curve_rows(task: str, group: str, unit: str, curve: Curve) -> list[list[Any]]:
    return [
        [
            task,
            group,
            unit,
            f"{step:g}",
            f"{curve.iqm[i]:.6g}",
            f"{curve.low[i]:.6g}",
            f"{curve.high[i]:.6g}",
            int(curve.runs[i]),
        ]
        for i, step in enumerate(curve.steps)
    ]


def write_curves(report: Report, out: Path) -> None:
    """Every learning-curve point with the number of runs it rests on."""
    with writing(out / "curves.csv") as path, open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["task", "group", "unit", "env_step", "iqm", "ci_low", "ci_high", "runs"])
        for task in report.tasks:
            for result in task.groups:
                writer.writerows(_curve_rows(task.name, result.group.label, task.score_name, result.curve))
        if report.aggregate is not None:
            for label, curve in report.aggregate.curve.items():
                writer.writerows(_curve_rows("across tasks", label, "normalised score", curve))


def summary_markdown(report: Report) -> str:
    """summary.md: what the runs are, the per-task table, the normalisation, the aggregates, notes and figures."""
    from ace_rl import __version__

    groups = [r for task in report.tasks for r in task.groups]
    lines = [
        "# ace-rl report",
        "",
        f"{len(report.runs)} runs from {', '.join(f'`{p}`' for p in report.inputs)}: {len(report.tasks)} task(s), "
        f"{len({r.group.label for r in groups})} algorithm group(s). ace-rl {__version__}. Every interval is a 95 % "
        f"stratified-bootstrap confidence interval from rliable ({report.reps} repetitions, seed {report.seed}); "
        f"IQM is the interquartile mean over seeds (the mean of the middle 50 % of runs). Seed counts below "
        f"{FEW_SEEDS} are marked `(<{FEW_SEEDS})`: intervals from so few runs are unreliable.",
        "",
        "## Per task",
        "",
        "Scores in the task's own units: the success rate where the task reports success, the return otherwise. "
        "`final` is each run's score at the task's comparison step (the last env step every run of the task "
        "reached); `AUC` is the area under each run's learning curve from the first to the comparison step divided "
        "by that span (the curve's mean height, raw units, not normalised); `best` is each run's best evaluation up "
        "to the comparison step. Each is the IQM over the group's seeds [95 % CI]; `normalised final` is the final "
        "IQM on the normalised scale (see Normalisation).",
        "",
        "| task | score | algorithm | seeds | final at step | final IQM [95% CI] | normalised final | AUC IQM (steps) "
        "| best IQM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task in report.tasks:
        for result in task.groups:
            unit = task.score_name
            if result.final is None or result.auc is None or result.best is None:
                lines.append(
                    f"| {task.name} | {unit} | {result.group.label} | 0 of {len(result.group.runs)} | "
                    f"{steps_text(task.comparison_step)} | - | - | - | - |"
                )
                continue
            normalised = "-" if result.final_normalised is None else _interval(result.final_normalised, "normalised")
            seeds = _seeds_text(result.final.runs)
            if len(result.compared) < len(result.group.runs):
                seeds = f"{len(result.compared)} of {len(result.group.runs)}" + seeds[len(str(result.final.runs)) :]
            lines.append(
                f"| {task.name} | {unit} | {result.group.label} | {seeds} | "
                f"{steps_text(task.comparison_step)} | {_interval(result.final, unit)} | {normalised} | "
                f"{_interval(result.auc, unit)} ({steps_text(task.start_step)}-{steps_text(task.comparison_step)}) | "
                f"{_interval(result.best, unit)} |"
            )
    lines += ["", *paper_markdown(report)] if report.plan is not None else []
    lines += [
        "",
        "## Normalisation",
        "",
        "Aggregates across tasks use normalised final scores, `(score - low) / (high - low)`:",
        "",
        "| task | score | normalised as |",
        "|---|---|---|",
    ]
    for task in report.tasks:
        how = (
            "no reference score: per-task figures and table only"
            if task.normalisation is None
            else task.normalisation.description
        )
        lines.append(f"| {task.name} | {task.score_name} | {how} |")

    aggregate = report.aggregate
    lines += ["", "## Across tasks (normalised scores)", ""]
    if aggregate is None or not aggregate.metrics:
        lines.append("No aggregate metrics (see Notes).")
    else:
        lines += [
            f"Final normalised scores on {len(aggregate.tasks)} task(s): {', '.join(aggregate.tasks)}. Each number "
            "rests on the runs per task shown; optimality gap is the mean shortfall below a normalised score of 1 "
            "(lower is better).",
            "",
            "| algorithm | tasks | runs per task | " + " | ".join(METRIC_NAMES) + " |",
            "|---|---|---|" + "---|" * len(METRIC_NAMES),
        ]
        for label in aggregate.labels:
            estimates = aggregate.metrics[label]
            lines.append(
                f"| {label} | {len(aggregate.tasks)} | {_seeds_text(estimates[0].runs)} | "
                + " | ".join(_interval(e, "normalised") for e in estimates)
                + " |"
            )
    if aggregate is not None and aggregate.improvements:
        lines += [
            "",
            "Probability of improvement: the chance that a run of X scores higher than a run of Y on a task, averaged "
            "over the tasks both have (rliable's `probability_of_improvement`, Mann-Whitney U per task; 0.5 is a tie).",
            "",
            "| X | Y | tasks | runs per task (X / Y) | P(X > Y) [95% CI] |",
            "|---|---|---|---|---|",
        ]
        for improvement in aggregate.improvements:
            lines.append(
                f"| {improvement.x} | {improvement.y} | {len(improvement.tasks)} | "
                f"{_seeds_text(improvement.runs_x)} / {_seeds_text(improvement.runs_y)} | "
                f"{_interval(improvement.estimate, 'probability')} |"
            )
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in report.notes] or ["- All runs of each task cover the same env steps."]
    lines += ["", "## Figures", ""]
    lines += [f"- `{stem}.png` (and `.pdf`)" for stem in report.figures]
    lines += ["", "`curves.csv` holds every learning-curve point with the number of runs it rests on.", ""]
    return "\n".join(lines)
