"""An exception raised in a user's code (an environment, an agent) as a short cause for a one-line error:
its type, the first line of its message and the file and line in the user's code where it was raised.

Only the standard library is imported here."""

from __future__ import annotations

import os
import sysconfig
import traceback
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parent) + os.sep
_STANDARD_LIBRARY = str(Path(sysconfig.get_paths()["stdlib"]).resolve()) + os.sep
# Frames that only pass a call on to the user's code, or that a user's call ends in: ace-rl itself, Gymnasium's
# wrappers (TimeLimit, OrderEnforcing, ... around every registered environment), the standard library and the
# numerical libraries, whose frame would say where an error surfaced but not which line of the user's caused it.
_PASSING_ON = (os.sep + "gymnasium" + os.sep + "wrappers" + os.sep, os.sep + "gymnasium" + os.sep + "core.py")
_LIBRARIES = (os.sep + "numpy" + os.sep, os.sep + "torch" + os.sep)


def _is_ace_rl_or_wrapper(filename: str) -> bool:
    return filename.startswith(_PACKAGE) or any(part in filename for part in _PASSING_ON)


def user_frame(error: BaseException) -> str | None:
    """``FILE:LINE`` of the innermost frame of ``error``'s traceback in the user's code: outside ace_rl and
    Gymnasium's wrappers, and preferably outside the standard library, NumPy and PyTorch; None if there is none."""
    frames = [
        (str(Path(frame.filename).resolve()) if frame.filename and not frame.filename.startswith("<") else "", frame)
        for frame in traceback.extract_tb(error.__traceback__)
    ]
    candidates = [(name, frame) for name, frame in frames if name and not _is_ace_rl_or_wrapper(name)]
    own = [
        (name, frame)
        for name, frame in candidates
        if not name.startswith(_STANDARD_LIBRARY) and not any(part in name for part in _LIBRARIES)
    ]
    pool = own or candidates
    if not pool:
        return None
    frame = pool[-1][1]
    return f"{frame.filename}:{frame.lineno}"


def describe_error(error: BaseException) -> str:
    """``ValueError: boom, at /path/my_env.py:42``: the type, the first line of the message and `user_frame`."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    where = user_frame(error)
    return text if where is None else f"{text}, at {where}"
