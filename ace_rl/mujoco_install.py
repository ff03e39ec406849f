"""The MuJoCo that ace-rl installs, and the check that the installed one is whole.

Every install path of ace-rl pins ``mujoco==3.3.0`` (Meta-World 3.1.1 pins it; see pyproject.toml).
MuJoCo 4 is split into three distributions, ``mujoco`` (a thin wrapper), ``mujoco-core`` and
``mujoco-studio``, which all write into the same ``mujoco/`` package directory. When pip replaces mujoco 4
by 3.3.0 it removes only the thin ``mujoco`` distribution; the other two stay, one of their plugins stays in
``mujoco/plugin/`` linked against ``libmujoco.so.4.*``, and mujoco 3.3.0's ``import mujoco``, which loads
every bundled plugin, fails with an OSError. That happens in a virtual environment where an older ace-rl
(or anything else) installed mujoco 4 before this ace-rl was installed. The check reads package metadata
only, so it is cheap and imports nothing.
"""

from __future__ import annotations

import functools
from importlib import metadata

MUJOCO_VERSION = "3.3.0"
MUJOCO_4_PARTS = ("mujoco-core", "mujoco-studio")


def _installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def mujoco_install_problem() -> str | None:
    """One line naming what is wrong with the installed MuJoCo and the command that fixes it, or None."""
    mujoco = _installed_version("mujoco")
    if mujoco is not None and int(mujoco.split(".")[0]) >= 4:
        return None  # a whole MuJoCo 4 (its parts come with it); ace-rl's suites need 3.3.0, which they pin
    leftovers = {part: version for part in MUJOCO_4_PARTS if (version := _installed_version(part)) is not None}
    if not leftovers:
        return None
    found = ", ".join(f"{part} {version}" for part, version in leftovers.items())
    return (
        f"MuJoCo is broken in this environment: mujoco {mujoco or '(missing)'} sits on leftovers of MuJoCo 4 "
        f"({found}) that pip did not remove, and `import mujoco` fails; fix it with: "
        f"pip uninstall -y {' '.join(leftovers)} && "
        f"pip install --force-reinstall --no-deps mujoco=={MUJOCO_VERSION}"
    )
