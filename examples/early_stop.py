"""An early-stopping callback to name on the command line:

    ace-rl train --env Pendulum-v1 --preset small --callback examples.early_stop:pendulum_solved

(run from the repository root, or with this directory's parent on PYTHONPATH)."""

from __future__ import annotations

from ace_rl.callbacks import Callback, EarlyStopping


def pendulum_solved() -> Callback:
    """Stop once the mean evaluation return reaches -200 (Pendulum-v1 is about solved there), or after ten
    evaluations in a row without a better one."""
    return EarlyStopping(threshold=-200.0, patience=10)
