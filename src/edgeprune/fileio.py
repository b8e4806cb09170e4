"""Atomic file output: results are written to a temporary path and renamed into place.

Temporary paths are hidden siblings named ``.<name>.tmp-<random><suffix>``; a process killed
mid-write (SIGKILL runs no cleanup) leaves one behind, and :func:`remove_stale_temps` (run by
each snakemake invocation before its first job) removes them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: What marks atomic_path's temporary files (``.<name>.tmp-<random><suffix>``).
TEMP_MARK = ".tmp-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    ``suffix`` defaults to the suffix of ``path`` so that libraries which infer a format from the
    file name (Keras, matplotlib) still work.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(target.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{TEMP_MARK}", suffix=suffix,
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temps(root: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files of interrupted atomic writes under ``root``; returns them.

    Only safe when nothing writes under ``root`` (a snakemake invocation holds the working
    directory's lock and starts no job before its ``onstart``)."""
    removed = []
    base = Path(root)
    if not base.is_dir():
        return removed
    for path in sorted(base.rglob(f".*{TEMP_MARK}*")):
        if path.is_symlink() or not path.exists():
            continue
        if path.is_dir():  # save_ir's temporary folder
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
