"""ace-rl: a reference implementation of ACE (Ji et al., ICML 2024).

The Python API (`ace_rl.api`) is reachable from here: ``ace_rl.train``, ``ace_rl.resume``,
``ace_rl.load_policy``, ``ace_rl.evaluate``, ``ace_rl.TrainConfig``. Importing ace_rl only defines names: the
modules behind them (PyTorch, Gymnasium) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "train": "ace_rl.api",
    "resume": "ace_rl.api",
    "evaluate": "ace_rl.api",
    "load_policy": "ace_rl.api",
    "Run": "ace_rl.api",
    "Evaluation": "ace_rl.api",
    "Policy": "ace_rl.policy",
    "TrainConfig": "ace_rl.config",
    "preset_config": "ace_rl.config",
}

if TYPE_CHECKING:  # the names for type checkers; `X as X` marks each as re-exported (as _LAZY does at run time)
    from ace_rl.api import Evaluation as Evaluation
    from ace_rl.api import Run as Run
    from ace_rl.api import evaluate as evaluate
    from ace_rl.api import load_policy as load_policy
    from ace_rl.api import resume as resume
    from ace_rl.api import train as train
    from ace_rl.config import TrainConfig as TrainConfig
    from ace_rl.config import preset_config as preset_config
    from ace_rl.policy import Policy as Policy


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ace_rl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
