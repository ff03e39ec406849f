"""An MkDocs hook: the benchmark figures and the video are kept once, in benchmarks/results/; this adds them to
the site under results/ (docs/benchmarks.md links results/hopper_sweep/learning_curves.png, for example)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
SUFFIXES = {".png", ".mp4"}


def on_files(files: Files, config: Any) -> Files:
    for path in sorted(RESULTS.rglob("*")):
        if path.suffix in SUFFIXES and path.is_file():
            uri = "results/" + path.relative_to(RESULTS).as_posix()
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
