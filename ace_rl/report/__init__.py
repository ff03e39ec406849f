"""`ace-rl report`: judge many runs with the field's statistics (rliable) and plot ACE's own signals.

Reads run directories (single runs or whole sweeps), groups them by task, algorithm and swept option, aligns
their evaluations by env step, and writes PNG and PDF figures, ``summary.md``, ``summary.csv`` and
``curves.csv`` into the output directory.

Statistics follow Agarwal et al. (NeurIPS 2021) through their library, rliable: the interquartile mean (IQM)
over seeds with 95 % stratified-bootstrap confidence intervals per task; across tasks, IQM, median, mean and
optimality gap of normalised scores, the sample-efficiency curve, the performance profile and the probability
of improvement. The same inputs, ``reps`` and ``seed`` give the same report.

The modules, in the order a report flows through them:

- ``runs``: reading run directories, collecting them and grouping them into labelled groups;
- ``paper``: the plan of the runs' sweep (``ace-rl sweep --plan``): domains, budgets and reference values;
- ``stats``: alignment, the IQM with its bootstrap intervals, each run's final score, AUC and best;
- ``analysis``: per task and across tasks, what is compared and what enters the aggregates, and the notes;
- ``figures``: the matplotlib figures; ``summary``: summary.md, summary.csv and curves.csv;
- ``output``: writing the files, and moving a finished report into place; ``libraries``: the optional
  libraries (the ``report`` extra), imported on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ace_rl.report.analysis import (
    AggregateResult,
    GroupResult,
    Improvement,
    Report,
    TaskResult,
    analyse_aggregate,
    analyse_task,
    build_report,
    comparison_step,
)
from ace_rl.report.figures import CAUSAL_SIZE, DPI, LEGEND_LINE, PANEL_SIZE, learning_curves_layout, write_figures
from ace_rl.report.libraries import EXTRA, ReportError, libraries
from ace_rl.report.output import staged_output
from ace_rl.report.runs import Group, RunRecord, collect_runs, group_runs, load_run, run_label, swept_options
from ace_rl.report.stats import Aligned, Curve, Estimate, align, iqm_curve, iqm_estimate, run_auc, run_best, run_final
from ace_rl.report.summary import summary_markdown, summary_rows, write_curves, write_summary


def make_report(dirs: Sequence[Path], out: Path, reps: int = 2000, seed: int = 0, skip_empty: bool = False) -> Report:
    """Build the report and write its figures, summary.md, summary.csv and curves.csv into ``out``, all at once
    (output.staged_output): a report that fails leaves no partial files and any earlier report in ``out``."""
    report = build_report(dirs, reps, seed, skip_empty)
    with staged_output(out) as staging:
        report.figures = write_figures(report, staging)  # summary.md lists them
        write_summary(report, staging)
        write_curves(report, staging)
    return report


__all__ = [
    "CAUSAL_SIZE",
    "DPI",
    "EXTRA",
    "LEGEND_LINE",
    "PANEL_SIZE",
    "AggregateResult",
    "Aligned",
    "Curve",
    "Estimate",
    "Group",
    "GroupResult",
    "Improvement",
    "Report",
    "ReportError",
    "RunRecord",
    "TaskResult",
    "align",
    "analyse_aggregate",
    "analyse_task",
    "build_report",
    "collect_runs",
    "comparison_step",
    "group_runs",
    "iqm_curve",
    "iqm_estimate",
    "learning_curves_layout",
    "libraries",
    "load_run",
    "make_report",
    "run_auc",
    "run_best",
    "run_final",
    "run_label",
    "summary_markdown",
    "summary_rows",
    "swept_options",
    "write_curves",
    "write_figures",
    "write_summary",
]
