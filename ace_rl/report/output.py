"""Putting the report's files in place: each write names its file when it fails, and a report reaches its output
directory whole or not at all."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from ace_rl.report.libraries import ReportError


@contextlib.contextmanager
def writing(path: Path) -> Iterator[Path]:
    """Yields ``path``; an OSError while writing it names it (a full disk's write error names no file)."""
    try:
        yield path
    except OSError as error:
        if error.filename:
            raise
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error


@contextlib.contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """Yields an empty staging directory for the report's files and, once the block has written them, moves them
    into ``out``; an OSError on the way becomes a ReportError naming ``out``.

    The staging directory is hidden and on the same file system as ``out`` (inside ``out`` when it exists, else
    next to it), so a report that fails (a full disk, a read-only directory) leaves no partial files and any
    earlier report in ``out`` as it was. Parent directories created for ``out`` are removed again on failure."""
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file; expected a directory (created if missing)")
    created = [path for path in (out.parent, *out.parent.parents) if not path.exists()]  # deepest first
    staging: Path | None = None
    moving = finished = False
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        parent = out if out.is_dir() else out.parent
        remove_abandoned_staging(parent, out.name)
        staging = parent / f"{_staging_prefix(out.name)}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
        yield staging
        moving = True
        move_into_place(staging, out)
        finished = True
    except OSError as error:
        failed = Path(error.filename) if error.filename else None
        where = f"{failed.name}: " if failed and failed.parent == staging else ""
        earlier = "; the earlier report there is unchanged" if not moving and (out / "summary.md").is_file() else ""
        raise ReportError(f"--out {out}: cannot write the report ({where}{error.strerror or error}){earlier}") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for path in created if not finished else []:
            with contextlib.suppress(OSError):
                path.rmdir()


def _staging_prefix(name: str) -> str:
    return f".{name}.report-"


def remove_abandoned_staging(parent: Path, name: str) -> None:
    """Remove the staging directories of reports into ``name`` that were killed (SIGKILL, a lost machine) before
    they could clean up: those made on this machine by a process that no longer runs. A report of another
    machine (a shared file system), or one whose pid a new process took, leaves its directory alone."""
    host, prefix = socket.gethostname(), _staging_prefix(name)
    for path in parent.glob(f"{glob.escape(prefix)}{glob.escape(host)}-*-*"):
        pid = path.name[len(prefix) + len(host) + 1 :].split("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished report to ``out``; into an existing ``out``, file by file (renames within one file
    system) with summary.md last, then remove the earlier report's figures that this one does not have."""
    if not out.exists():
        staging.rename(out)
        return
    earlier = out / "summary.md"
    listed = earlier.read_text(errors="replace") if earlier.is_file() else ""
    earlier_figures = re.findall(r"^- `([A-Za-z0-9_.-]+)\.png` \(and `\.pdf`\)$", listed, re.M)
    written = sorted(staging.iterdir(), key=lambda path: path.name == "summary.md")
    for path in written:
        os.replace(path, out / path.name)
    for stem in set(earlier_figures) - {path.stem for path in written}:
        for suffix in (".png", ".pdf"):
            (out / f"{stem}{suffix}").unlink(missing_ok=True)
