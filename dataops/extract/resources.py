"""dlt resources of the declared extract sources: a PostgreSQL table and a paginated JSON API.

Each resource is named like the declared table, so dlt writes into that table's landing folder.
Records are checked against the declaration while they are read: a field that is not declared is
a schema change and stops the run with an error naming it (nothing lands; see pipeline.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dataops.extract.errors import ExtractError, env_value
from dataops.sources.registry import SourceTable

# Columns dlt adds to every record (load id and row id); ingestion keeps them as extra columns.
DLT_COLUMNS = ("_dlt_load_id", "_dlt_id")


def key_columns(table: SourceTable) -> list[str]:
    """The raw names of the primary key columns (dlt deduplicates cursor ties by them)."""
    staged = {c.staged_name: c.name for c in table.columns}
    return [staged[name] for name in table.primary_key if name in staged]


def _incremental(table: SourceTable):
    import dlt

    if not table.extract.cursor:
        return None
    return dlt.sources.incremental(table.extract.cursor, initial_value=table.extract.initial_value)


def check_fields(table: SourceTable, records: list[dict[str, Any]], where: str) -> None:
    """Stop at a field the declaration does not have (a schema change of the source)."""
    if not table.columns:  # the first extract, to draft the declaration from
        return
    declared = {c.name for c in table.columns} | set(DLT_COLUMNS)
    for number, record in enumerate(records, 1):
        new = sorted(set(record) - declared)
        if new:
            raise ExtractError(
                f"schema change in source {table.key}: field(s) {new} in record {number} of "
                f"{where} are not declared in {table.declared_in}. Declare them under the "
                f"table's columns (with a data_type), run `dataops sources sync`, then "
                f"`dataops extract {table.source}` again; the run resumes where the last "
                "completed load ended."
            )


def resource_for(table: SourceTable):
    kind = table.extract_source.kind
    if kind == "postgres":
        return postgres_table(table)
    return api_resource(table)


def postgres_table(table: SourceTable):
    """One PostgreSQL table, incremental by its cursor column (or a full snapshot each run)."""
    from dlt.sources.sql_database import sql_table

    source = table.extract_source
    url = env_value(source.credentials_env, table, "connection URL")
    # the driver the platform already ships (psycopg2-binary); SQLAlchemy's default is psycopg 3
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            url = "postgresql+psycopg2://" + url.removeprefix(scheme)
    resource = sql_table(
        credentials=url,
        table=table.extract.table or table.name,
        schema=source.schema_name,
        incremental=_incremental(table),
        primary_key=key_columns(table),
        write_disposition="append",
        reflection_level="full",
        backend="sqlalchemy",
    )
    resource = resource.with_name(table.name)

    def declared_only(record: dict[str, Any]) -> dict[str, Any]:
        check_fields(
            table, [record], f"table {source.schema_name}.{table.extract.table or table.name}"
        )
        return record

    return resource.add_map(declared_only)


def _paginator(table: SourceTable):
    from dlt.sources.helpers.rest_client.paginators import (
        JSONResponseCursorPaginator,
        PageNumberPaginator,
        SinglePagePaginator,
    )

    extract = table.extract
    if extract.paginate == "page":
        return PageNumberPaginator(
            base_page=1, page_param=extract.page_param, total_path=None, stop_after_empty_page=True
        )
    if extract.paginate == "cursor":
        return JSONResponseCursorPaginator(
            cursor_path=extract.next_cursor, cursor_param=extract.cursor_param
        )
    return SinglePagePaginator()


def api_resource(table: SourceTable):
    """A paginated JSON API resource, incremental by an updated-at field, with retries."""
    import dlt
    from dlt.sources.helpers.requests import Client
    from dlt.sources.helpers.rest_client import RESTClient

    source = table.extract_source
    extract = table.extract
    base_url = env_value(source.base_url_env, table, "base URL")
    headers = {}
    if source.token_env:
        headers["Authorization"] = f"Bearer {env_value(source.token_env, table, 'API token')}"
    session = Client(
        request_max_attempts=source.max_attempts,
        request_backoff_factor=0.2,
        request_max_retry_delay=10,
        request_timeout=30,
    ).session
    client = RESTClient(
        base_url=base_url,
        headers=headers,
        paginator=_paginator(table),
        data_selector=extract.records or "$",
        session=session,
    )

    def pages(updated=None) -> Iterator[list[dict[str, Any]]]:
        params: dict[str, Any] = {}
        if extract.paginate != "none":
            params[extract.page_size_param] = extract.page_size
        if extract.since_param and updated is not None and updated.last_value is not None:
            params[extract.since_param] = updated.last_value
        for number, page in enumerate(client.paginate(extract.path, params=params), 1):
            records = list(page)
            check_fields(table, records, f"page {number} of {extract.path}")
            yield records

    # No dlt primary key: records re-sent at the cursor boundary are recognised by their content
    # (dlt hashes them), the same before and after the declaration exists.
    options = dict(name=table.name, write_disposition="append")
    if extract.cursor:

        cursor = _incremental(table)

        @dlt.resource(**options)
        def incremental_records(updated=cursor):
            yield from pages(updated)

        return incremental_records()

    @dlt.resource(**options)
    def records():
        yield from pages()

    return records()
