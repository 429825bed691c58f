"""What a benchmark ingested: every landed file of its sample loaded, else it stops.

Ingestion leaves a file that changed within the settle window (``DATAOPS_SETTLE_SECONDS``,
dataops/ingestion/landing.py) for a later run. A benchmark that ingests the sample it has just
generated sets the window to 0 (its files are complete); this check makes sure none was left
behind, so no figure is ever measured on an empty or partial warehouse.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from dataops.sources.registry import load_registry


def require_all_ingested(warehouse: Path, landing: Path) -> int:
    """The order items loaded into ``warehouse`` from ``landing``; exits when a landed file has
    no load_ledger row (left waiting) or no order item was loaded."""
    landed = sum(len(table.landed_files(landing)) for table in load_registry())
    with duckdb.connect(str(warehouse), read_only=True) as con:
        recorded = con.execute(
            "select count(distinct file_path) from platform.load_ledger"
        ).fetchone()[0]
        rows = con.execute("select count(*) from raw_shop.order_items").fetchone()[0]
    if not landed or recorded < landed or not rows:
        raise SystemExit(
            f"ingestion left files behind: {recorded} of {landed} landed files under {landing} "
            f"are in {warehouse}'s load_ledger, {rows} order items loaded (a file in the settle "
            "window waits: set DATAOPS_SETTLE_SECONDS=0 for a freshly generated sample)"
        )
    return rows
