"""The report's optional libraries (the `report` extra), imported on first use, and the error a report stops with.

Nothing here is imported at module level, so `ace-rl report --help` stays fast."""

from __future__ import annotations

import functools
from typing import Any

from ace_rl.config import ConfigError
from ace_rl.extras import install_hint

EXTRA = install_hint("report")


class ReportError(ConfigError):
    """The runs cannot be reported: no runs, an unreadable file, a run without evaluations, a missing extra."""


@functools.cache
def libraries() -> tuple[Any, Any, Any, Any]:
    """(pyplot, rliable.library, rliable.metrics, rliable.plot_utils), or ReportError naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import arch
        import matplotlib.pyplot as plt
        from rliable import library as rly
        from rliable import metrics, plot_utils
    except ImportError as error:
        raise ReportError(f"ace-rl report needs the report extra: {EXTRA} ({error})") from None
    except (TypeError, AttributeError) as error:  # arch 7 fails to import under pandas 3
        raise ReportError(
            f"rliable cannot be imported with the installed arch/pandas ({error}); {EXTRA} pins working versions"
        ) from None
    if int(arch.__version__.split(".")[0]) >= 8:  # refuses the random_state that rliable 1.2 passes it
        raise ReportError(f"rliable does not work with arch {arch.__version__}; {EXTRA} pins arch<8")
    return plt, rly, metrics, plot_utils


@functools.cache
def pandas() -> Any:
    """The pandas module, or ReportError naming the extra."""
    try:
        import pandas
    except ImportError as error:
        raise ReportError(f"ace-rl report needs the report extra: {EXTRA} ({error})") from None
    return pandas
