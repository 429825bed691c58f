"""A cheap fingerprint of a set of files: what a long-lived process compares to know whether the
code or project it loaded earlier is still what is on disk."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def stat_fingerprint(paths: Iterable[Path]) -> str:
    """A digest of the path, size and modification time of each file (a missing file is left
    out): any edit, addition or removal changes it; contents are not read."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        try:
            stat = path.stat()
        except OSError:
            continue
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
