"""A declared source that exercises every staging feature, and raw rows that hit each one.

Used by test_staging_macros.py (compiled SQL and real DuckDB results) and test_registry.py.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import yaml

SOURCE = "lab"
TABLE = "accounts"
MODEL = f"stg_{SOURCE}__{TABLE}"


def declaration() -> dict:
    """The declaration as a Python structure (tests break copies of it)."""
    return {
        "version": 2,
        "sources": [
            {
                "name": SOURCE,
                "description": "Every staging feature in one source.",
                "schema": "raw_lab",
                "config": {
                    "loaded_at_field": "_loaded_at",
                    "freshness": {
                        "warn_after": {"count": 1, "period": "day"},
                        "error_after": {"count": 2, "period": "day"},
                    },
                    "meta": {
                        "owner": "lab-team",
                        "timezone": "Europe/Berlin",
                        "landing": {
                            "path": "lab/{table}",
                            "format": "csv",
                            "options": {"delimiter": ";", "encoding": "latin-1"},
                        },
                    },
                },
                "tables": [
                    {
                        "name": TABLE,
                        "description": "Accounts, delivered again when they change.",
                        "config": {
                            "meta": {
                                "primary_key": "account_id",
                                "dedupe": {"latest_by": "updated_at"},
                                "derived": [
                                    {
                                        "name": "balance_cents",
                                        "expression": "balance * 100",
                                        "data_type": "bigint",
                                        "description": "Balance in cents.",
                                    }
                                ],
                                "monitors": {
                                    "volume": True,
                                    "freshness": True,
                                    "event_time": "created_at",
                                    "columns": {"balance": ["null_rate", "mean"]},
                                },
                            }
                        },
                        "columns": [
                            {
                                "name": "Account ID",
                                "data_type": "bigint",
                                "description": "Account identifier.",
                                "meta": {"rename": "account_id"},
                            },
                            {
                                "name": "E-Mail",
                                "data_type": "varchar",
                                "description": "Email.",
                                "meta": {"rename": "email_hash", "pii": True},
                            },
                            {
                                "name": "status",
                                "data_type": "varchar",
                                "description": "Status.",
                                "meta": {
                                    "values_map": {"A": "active", "I": "inactive"},
                                    "accepted_values": ["active", "inactive", "closed"],
                                },
                            },
                            {
                                "name": "country",
                                "data_type": "varchar",
                                "description": "Country.",
                                "meta": {"case": "upper"},
                            },
                            {
                                "name": "balance",
                                "data_type": "decimal(18, 2)",
                                "description": "Balance in EUR, delivered with a decimal comma.",
                                "meta": {
                                    "expression": "replace(\"balance\", ',', '.')",
                                    "safe_cast": True,
                                },
                            },
                            {
                                "name": "logins",
                                "data_type": "integer",
                                "description": "Logins.",
                                "meta": {"safe_cast": True, "trim": True},
                            },
                            {
                                "name": "is_vip",
                                "data_type": "boolean",
                                "description": "VIP flag.",
                                "meta": {"values_map": {"Y": "true", "N": "false"}},
                            },
                            {
                                "name": "updated_at",
                                "data_type": "timestamp",
                                "description": "Last change, in Berlin time (staged in UTC).",
                            },
                            {
                                "name": "created_at",
                                "data_type": "timestamp",
                                "description": "Creation, delivered in UTC.",
                                "meta": {"timezone": "UTC"},
                            },
                        ],
                    }
                ],
            }
        ],
    }


# Raw rows as ingestion writes them (all text), plus lineage.
RAW_COLUMNS = [
    "Account ID",
    "E-Mail",
    "status",
    "country",
    "balance",
    "logins",
    "is_vip",
    "updated_at",
    "created_at",
]
RAW_ROWS = [
    # account 1: an old and a new version; the new one (later updated_at) wins
    [
        "1",
        "ann@example.com",
        "A",
        "de",
        "10,50",
        "3",
        "Y",
        "2024-01-01 10:00:00",
        "2024-01-01 09:00:00",
    ],
    [
        "1",
        " ann@example.com ",
        "I",
        "de ",
        "12,75",
        " 4 ",
        "N",
        "2024-07-01 12:00:00",
        "2024-01-01 09:00:00",
    ],
    # account 2: a balance and a login count that do not convert (counted, staged as null)
    [
        "2",
        "bob@example.com",
        "X",
        "fr",
        "abc",
        "many",
        "Y",
        "2024-03-31 03:30:00",
        "2024-02-01 00:00:00",
    ],
    # account 3: empty strings become null; no failure is counted for a missing value
    ["3", "", "A", "", None, None, None, "2024-02-01 00:00:00", "2024-02-01 00:00:00"],
    # account 4: no silent change of meaning: a fraction is not an integer, decimals beyond the
    # scale are not rounded (both counted); an offset is honoured (not read as Berlin time)
    [
        "4",
        "dan@example.com",
        "A",
        "nl",
        "1,234",
        "1.5",
        "N",
        "2024-07-01T12:00:00+05:00",
        "2024-02-01T00:00:00Z",
    ],
]


def write_declaration(project: Path, document: dict | None = None) -> Path:
    folder = project / "models" / "staging" / SOURCE
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"_{SOURCE}__sources.yml"
    path.write_text(yaml.safe_dump(document or declaration(), sort_keys=False), encoding="utf-8")
    return path


def write_raw_table(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema if not exists raw_lab")
        columns = ", ".join(f'"{c}" varchar' for c in RAW_COLUMNS)
        con.execute(
            f"create or replace table raw_lab.accounts ({columns}, _file_name varchar, "
            "_file_hash varchar, _batch_id varchar, _loaded_at timestamp)"
        )
        for number, row in enumerate(RAW_ROWS):
            con.execute(
                f"insert into raw_lab.accounts values ({', '.join('?' * (len(row) + 4))})",
                [*row, f"accounts_{number}.csv", f"hash{number}", "batch", "2024-08-01 00:00:00"],
            )
