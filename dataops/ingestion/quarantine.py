"""The quarantine folder: files that failed validation, each beside a machine-readable reason.

Layout: ``<landing>/_quarantine/<source>/<table>/<file>`` and ``<file>.reason.json``. The folder
sits outside every table's landing folder and ingestion skips any path under it, so a quarantined
file is never picked up again by itself; ``dataops replay <file>`` loads it once it is fixed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from dataops.sources.registry import SourceTable

QUARANTINE_DIR = "_quarantine"
REASON_SUFFIX = ".reason.json"


def folder(landing_root: Path, table: SourceTable) -> Path:
    return landing_root / QUARANTINE_DIR / table.source / table.name


def is_quarantined(path: Path, landing_root: Path) -> bool:
    try:
        relative = path.resolve().relative_to(landing_root.resolve())
    except ValueError:
        return False
    return QUARANTINE_DIR in relative.parts


def reason_path(quarantined: Path) -> Path:
    return quarantined.with_name(quarantined.name + REASON_SUFFIX)


def destination(landing_root: Path, table: SourceTable, path: Path, file_hash: str) -> Path:
    """Where a bad file goes; a file already in quarantine (a replay that failed) stays put."""
    if is_quarantined(path, landing_root):
        return path
    target = folder(landing_root, table) / path.name
    if target.exists() and not _same_file(target, path):
        target = target.with_name(f"{file_hash[:12]}_{path.name}")
    return target


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.samefile(other)
    except OSError:
        return False


def write_reason(quarantined: Path, reason: dict[str, Any]) -> Path:
    """Write the reason file atomically (a crash leaves the old one or the new one)."""
    target = reason_path(quarantined)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(reason, indent=2, sort_keys=True, default=str) + "\n", "utf-8")
    os.replace(partial, target)
    return target


def read_reason(quarantined: Path) -> dict[str, Any] | None:
    target = reason_path(quarantined)
    if not target.is_file():
        return None
    try:
        return json.loads(target.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def move(source: Path, target: Path) -> None:
    """Move a file (atomic rename on one file system; copy then delete across file systems)."""
    if source == target:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError:
        shutil.move(str(source), str(target))


def table_of(path: Path, landing_root: Path, tables: list[SourceTable]) -> SourceTable:
    """The declared table a quarantined file belongs to, from ``_quarantine/<source>/<table>/``."""
    try:
        parts = path.resolve().relative_to((landing_root / QUARANTINE_DIR).resolve()).parts
    except ValueError:
        raise ValueError(
            f"{path} is not in the quarantine folder {landing_root / QUARANTINE_DIR}: expected "
            f"{landing_root / QUARANTINE_DIR}/<source>/<table>/<file>"
        ) from None
    if len(parts) != 3:
        raise ValueError(
            f"{path}: expected a file directly in {landing_root / QUARANTINE_DIR}/<source>/<table>/"
        )
    key = f"{parts[0]}.{parts[1]}"
    for table in tables:
        if table.key == key:
            return table
    raise ValueError(
        f"{path}: no declared source table {key}; declared are {sorted(t.key for t in tables)}"
    )
