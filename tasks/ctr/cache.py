"""On-disk caches of preprocessed data and PEP masks, written atomically.

Everything is written into a temporary sibling first and moved into place with os.replace, so a
reader never sees a half-written entry and concurrent writers (a multirun) cannot corrupt one:
the first complete entry wins, later ones are discarded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harmless.atomic import atomic_path

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """`~/.cache/harmless` (never the working directory)."""
    return Path("~/.cache/harmless").expanduser()


def resolve_cache_dir(cache_dir: str | Path | None) -> Path:
    path = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    return path.resolve()


def digest(key: Any, length: int = 16) -> str:
    """A short stable hash of a JSON-serialisable key."""
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_stamp(path: Path) -> list:
    """(absolute path, size, mtime in ns): a changed source file invalidates its cache."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory that becomes `final` when the block succeeds.

    If `final` appeared meanwhile (another process finished first), the new copy is dropped.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            log.info("%s was written by another process meanwhile; keeping that one", final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_file(final: Path):
    """A temporary path in `final`'s folder, moved onto `final` on success (harmless.atomic)."""
    return atomic_path(final)
