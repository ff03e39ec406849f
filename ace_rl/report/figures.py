"""The report's figures, drawn with matplotlib (and rliable's plots) and saved as PNG and PDF: the learning
curves per task, ACE's causal weights and resets per group, and rliable's aggregate plots across tasks.

The figures draw what the analysis decided; they add nothing to the report's notes."""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ace_rl.report.analysis import AggregateResult, GroupResult, Report, TaskResult
from ace_rl.report.libraries import libraries
from ace_rl.report.output import writing
from ace_rl.report.stats import METRIC_NAMES, align
from ace_rl.runstate import safe_name

# Figure sizes in inches; PNGs are written at DPI dots per inch, so a figure of w x h inches is w*DPI x h*DPI px.
DPI = 150
PANEL_SIZE = (4.0, 3.0)
"""One task's learning-curve panel; the learning-curve figure has up to PANEL_COLUMNS panels per row."""
PANEL_COLUMNS = 4
LEGEND_LINE = 0.2
LEGEND_CHARACTER = 0.075
"""Inches per line and (roughly) per character of the learning-curve figure's legend."""
CAUSAL_SIZE = (8.0, 6.0)
CURVE_SIZE = (7.0, 5.0)
"""The sample-efficiency curve and the performance profile."""
IMPROVEMENT_WIDTH = 8.0
IMPROVEMENT_HEIGHT = (1.4, 0.5)
"""The probability-of-improvement figure's height in inches: a base, and one row per pair."""
PAIRS_PER_FIGURE = 24
"""More pairs than this are split over several probability-of-improvement figures (each at most
(1.4 + 0.5 * 24) * DPI = 2,010 px tall)."""


def _colours(report: Report) -> dict[str, Any]:
    """A distinct colour per group: tab10 or tab20 where they suffice, else the turbo colormap sampled at as many
    evenly spaced points (its 256 entries keep up to 256 groups apart)."""
    plt, _, _, _ = libraries()
    labels: list[str] = []
    for task in report.tasks:
        labels.extend(r.group.label for r in task.groups if r.group.label not in labels)
    if len(labels) > 20:
        return dict(zip(labels, plt.get_cmap("turbo")(np.linspace(0.0, 1.0, len(labels)))))
    palette = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: palette(index) for index, label in enumerate(labels)}


def _save(fig: Any, out: Path, stem: str, figures: list[str]) -> None:
    plt, _, _, _ = libraries()
    try:
        for suffix in (".png", ".pdf"):
            with writing(out / f"{stem}{suffix}") as path:
                fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    figures.append(stem)


def write_figures(report: Report, out: Path) -> list[str]:
    """Every figure as PNG and PDF; returns their file stems."""
    colours = _colours(report)
    figures: list[str] = []
    plot_learning_curves(report.tasks, colours, out, figures)
    if report.plan is not None:  # the paper's layout: one figure per domain, a panel per task of the plan
        by_name = {task.name: task for task in report.tasks}
        for domain in report.plan.domains:
            tasks = [by_name[t.task] for t in report.plan.tasks if t.domain == domain and t.task in by_name]
            if tasks:
                stem = f"plan_domain__{safe_name(domain, compact=True)}"
                plot_learning_curves(
                    tasks, colours, out, figures, stem=stem, title=f"{domain} (plan {report.plan.name})"
                )
    for task in report.tasks:
        for result in task.groups:
            plot_causal_weights(task, result, out, figures)
    if report.aggregate is not None:
        plot_aggregates(report.aggregate, colours, out, figures)
    return figures


def learning_curves_layout(tasks: int, labels: Sequence[str]) -> tuple[tuple[float, float], list[str], int]:
    """The learning-curve figure's size in inches (PANEL_SIZE per task, PANEL_COLUMNS per row, and the legend
    below), the legend's labels wrapped to its column width, and its number of columns (one per panel)."""
    columns = min(PANEL_COLUMNS, tasks)
    rows = math.ceil(tasks / columns)
    width = PANEL_SIZE[0] * columns
    characters = max(12, int((PANEL_SIZE[0] - 0.6) / LEGEND_CHARACTER))
    wrapped = [textwrap.fill(label, characters) for label in labels]
    lines = max((label.count("\n") + 1 for label in wrapped), default=1)
    legend = math.ceil(len(labels) / columns) * lines * LEGEND_LINE + 0.15
    return (width, PANEL_SIZE[1] * rows + legend), wrapped, columns


def plot_learning_curves(
    tasks: Sequence[TaskResult],
    colours: Mapping[str, Any],
    out: Path,
    figures: list[str],
    stem: str = "learning_curves",
    title: str | None = None,
) -> None:
    """One panel per task: each group's IQM over seeds with its 95 % band; dashed where fewer runs cover the
    step; a dotted vertical line at the task's comparison step when some runs go beyond it. One legend below
    for all panels (a group has the same colour on every task and figure), of the groups these tasks have."""
    plt, _, _, _ = libraries()
    count = len(tasks)
    columns = min(PANEL_COLUMNS, count)
    rows = math.ceil(count / columns)
    seeds: dict[str, set[int]] = defaultdict(set)
    for task in tasks:
        for result in task.groups:
            seeds[result.group.label].add(len(result.group.runs))
    shown = {label: colour for label, colour in colours.items() if label in seeds}
    labels = []
    for label in shown:
        low, high = min(seeds[label]), max(seeds[label])
        labels.append(f"{label} ({low if low == high else f'{low}-{high}'} seed{'s' if high != 1 else ''})")
    size, wrapped, legend_columns = learning_curves_layout(count, labels)
    fig = plt.figure(figsize=size, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    if title is not None:
        fig.suptitle(title)
    for ax, task in zip(axes.flat, tasks):
        for result in task.groups:
            curve, runs = result.curve, len(result.group.runs)
            colour = colours[result.group.label]
            marker = "o" if len(curve.steps) <= 20 else None
            ax.fill_between(curve.steps, curve.low, curve.high, color=colour, alpha=0.2, linewidth=0)
            ax.plot(curve.steps, curve.iqm, color=colour, linestyle="--", linewidth=1.2, marker=marker, markersize=3)
            full = np.where(curve.runs == runs, curve.iqm, np.nan)
            ax.plot(curve.steps, full, color=colour, linewidth=1.8, marker=marker, markersize=3)
        if any(run.eval_steps[-1] > task.comparison_step for r in task.groups for run in r.group.runs):
            ax.axvline(task.comparison_step, color="0.4", linestyle=":", linewidth=1)
        ax.set_title(task.name, fontsize="medium")
        ax.set_xlabel("env step")
        ax.set_ylabel(f"{task.score_name} (IQM, 95% CI)")
        ax.grid(alpha=0.25)
    handles = [
        plt.Line2D([], [], color=colour, linewidth=1.8, label=text) for colour, text in zip(shown.values(), wrapped)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=legend_columns, fontsize="small", frameon=False)
    _save(fig, out, stem, figures)


def plot_causal_weights(task: TaskResult, result: GroupResult, out: Path, figures: list[str]) -> None:
    """ACE's causal weights per action dimension over env steps (mean over seeds, band from the lowest to the
    highest seed), the resets as dashed vertical lines, and the dormancy ratio at each reset below; for a group
    whose analysis chose runs to draw (GroupResult.causal_runs), no figure otherwise."""
    plt, _, _, _ = libraries()
    group, fitted = result.group, result.causal_runs
    if not fitted:
        return
    fig, (weights_ax, dormancy_ax) = plt.subplots(
        2, 1, figsize=CAUSAL_SIZE, sharex=True, height_ratios=[3, 1.3], layout="constrained"
    )
    action_dim = fitted[0].causal_weights.shape[1]
    names = next((run.action_names for run in fitted if run.action_names and len(run.action_names) == action_dim), None)
    distractors = fitted[0].distractors
    real = action_dim - distractors
    palette = plt.get_cmap("tab10" if real <= 10 else "viridis")
    for dimension in range(action_dim):
        aligned = align([run.causal_steps for run in fitted], [run.causal_weights[:, dimension] for run in fitted])
        label = f"w{dimension}" + (f" {names[dimension]}" if names and names[dimension] != f"a{dimension}" else "")
        if dimension >= real:  # a distractor: grey and dashed, so the eye separates it from the real dimensions
            colour, style = "0.55", "--"
            label = f"w{dimension} distractor" if not names else f"w{dimension} {names[dimension]} (ignored by the env)"
        else:
            colour = palette(dimension % 10) if real <= 10 else palette(dimension / max(real - 1, 1))
            style = "-"
        weights_ax.fill_between(
            aligned.steps,
            np.nanmin(aligned.values, axis=0),
            np.nanmax(aligned.values, axis=0),
            color=colour,
            alpha=0.15,
            linewidth=0,
        )
        weights_ax.plot(
            aligned.steps,
            np.nanmean(aligned.values, axis=0),
            color=colour,
            linewidth=1.5,
            linestyle=style,
            marker="o" if len(aligned.steps) <= 30 else None,
            markersize=3,
            label=label,
        )
    weights_ax.axhline(1.0, color="0.5", linestyle=":", linewidth=1)
    reset_steps = np.unique(np.concatenate([run.reset_steps for run in group.runs]))
    for step in reset_steps:
        for ax in (weights_ax, dormancy_ax):
            ax.axvline(step, color="0.35", linestyle="--", linewidth=0.8)
    for run in group.runs:
        if len(run.reset_steps):
            dormancy_ax.plot(run.reset_steps, run.dormancy_ratios, "o", color="0.2", markersize=4, alpha=0.7)
    if not len(reset_steps):
        dormancy_ax.text(0.5, 0.5, "no resets", transform=dormancy_ax.transAxes, ha="center", va="center")
    seeds = len(fitted)
    weights_ax.set_title(
        textwrap.fill(
            f"{task.name} / {group.label}: causal weights, mean of {seeds} seed{'s' if seeds != 1 else ''} "
            "(band: lowest to highest)",
            95,
        ),
        fontsize="medium",
    )
    weights_ax.set_ylabel("causal weight w")
    weights_ax.grid(alpha=0.25)
    if action_dim <= 12:
        weights_ax.legend(fontsize="x-small", ncol=min(action_dim, 3 if names else 6))
    dormancy_ax.set_ylabel("dormancy ratio\nat reset (dashed)")
    dormancy_ax.set_xlabel("env step")
    highest = max((run.dormancy_ratios.max() for run in group.runs if len(run.dormancy_ratios)), default=0)
    dormancy_ax.set_ylim(0, max(0.05, float(highest) * 1.15))
    dormancy_ax.grid(alpha=0.25)
    _save(
        fig,
        out,
        f"causal_weights__{safe_name(task.name, compact=True)}__{safe_name(group.label, compact=True)}",
        figures,
    )


def plot_aggregates(aggregate: AggregateResult, colours: Mapping[str, Any], out: Path, figures: list[str]) -> None:
    """rliable's four plots: aggregate metrics with intervals, sample-efficiency curve, performance profile,
    probability of improvement."""
    plt, _, _, plot_utils = libraries()
    labels = aggregate.labels
    if aggregate.metrics:
        longest = max(len(label) for label in labels)
        width, height = 14.0, 1.3 + 0.45 * len(labels)
        fig, _ = plot_utils.plot_interval_estimates(
            {label: np.array([e.value for e in aggregate.metrics[label]]) for label in labels},
            {
                label: np.array([[e.low for e in aggregate.metrics[label]], [e.high for e in aggregate.metrics[label]]])
                for label in labels
            },
            metric_names=METRIC_NAMES,
            algorithms=labels,
            colors=dict(colours),
            xlabel=f"normalised score ({len(aggregate.tasks)} tasks; 95% CI)",
            xlabel_y_coordinate=0.03,
        )
        fig.set_size_inches(width, height)
        left = min(0.4, (0.13 * longest + 0.3) / width)
        fig.subplots_adjust(left=left, right=0.98, bottom=0.75 / height, top=1 - 0.5 / height, wspace=0.15)
        _save(fig, out, "aggregate_metrics", figures)

        fig, ax = plt.subplots(figsize=CURVE_SIZE, layout="constrained")
        steps = next(iter(aggregate.curve.values())).steps
        plot_utils.plot_sample_efficiency_curve(
            steps,
            {label: aggregate.curve[label].iqm for label in labels},
            {label: np.stack([aggregate.curve[label].low, aggregate.curve[label].high]) for label in labels},
            algorithms=labels,
            colors=dict(colours),
            xlabel="env step",
            ylabel="IQM normalised score",
            ax=ax,
            marker="o" if len(steps) <= 30 else "",
            labelsize="large",
            ticklabelsize="medium",
            legend=True,
            legendsize="medium",
        )
        _save(fig, out, "sample_efficiency", figures)

        fig, ax = plt.subplots(figsize=CURVE_SIZE, layout="constrained")
        plot_utils.plot_performance_profiles(
            aggregate.profiles,
            aggregate.taus,
            performance_profile_cis=aggregate.profile_intervals,
            colors=dict(colours),
            xlabel=r"normalised score $\tau$",
            ylabel=r"fraction of runs with score $> \tau$",
            ax=ax,
            legend=True,
            legendsize="medium",
            labelsize="large",
            ticklabelsize="medium",
        )
        _save(fig, out, "performance_profile", figures)

    # Many pairs are split evenly over several figures of at most PAIRS_PER_FIGURE rows each.
    pairs = aggregate.improvements
    size = math.ceil(len(pairs) / math.ceil(len(pairs) / PAIRS_PER_FIGURE)) if pairs else 1
    parts = [pairs[start : start + size] for start in range(0, len(pairs), size)]
    for part, improvements in enumerate(parts, 1):
        height = IMPROVEMENT_HEIGHT[0] + IMPROVEMENT_HEIGHT[1] * len(improvements)
        fig, ax = plt.subplots(figsize=(IMPROVEMENT_WIDTH, height))
        plot_utils.plot_probability_of_improvement(
            {f"{i.x};{i.y}": i.estimate.value for i in improvements},
            {f"{i.x};{i.y}": np.array([i.estimate.low, i.estimate.high]) for i in improvements},
            pair_separator=";",
            ax=ax,
            colors=[colours[i.y] for i in improvements],
            xlabel="P(X > Y), 95% CI",
            ticklabelsize="medium",
            labelsize="large",
        )
        ax.set_xlim(0, 1)
        longest_x, longest_y = max(len(i.x) for i in improvements), max(len(i.y) for i in improvements)
        fig.subplots_adjust(
            left=min(0.45, (0.1 * longest_x + 0.8) / IMPROVEMENT_WIDTH),
            right=1 - min(0.45, (0.1 * longest_y + 0.8) / IMPROVEMENT_WIDTH),
            bottom=0.8 / fig.get_figheight(),
            top=1 - 0.3 / fig.get_figheight(),
        )
        _save(fig, out, "probability_of_improvement" + (f"_{part}_of_{len(parts)}" if len(parts) > 1 else ""), figures)
