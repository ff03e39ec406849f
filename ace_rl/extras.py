"""The optional extras of ace-rl (pyproject.toml's optional-dependencies): which of an extra's modules are missing,
and the one-line command that installs the extra. The callers word their own errors around these two answers.

Only the standard library is imported here (no PyTorch), and a module is looked up without being imported, so a
check is cheap enough for the command line's validation and for `--help`.
"""

from __future__ import annotations

import importlib.util


def install_hint(extra: str) -> str:
    """``pip install "ace-rl[EXTRA]"``: the command that installs ``extra``, in a source checkout as from PyPI."""
    return f'pip install "ace-rl[{extra}]"'


def missing_modules(*modules: str) -> list[str]:
    """Those of ``modules`` (top-level import names, e.g. ``imageio_ffmpeg``) that are not installed, in the order
    given. A module that is installed but broken counts as installed: importing it says why it fails."""
    return [module for module in modules if not _installed(module)]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # a module in sys.modules without a spec (one a test put there)
        return True
