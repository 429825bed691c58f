"""Extract declared database and API sources with dlt into the landing folder.

A source declared with ``config.meta.extract`` (kind ``postgres`` or ``http_api``) is pulled by
dlt (https://dlthub.com, the field's maintained extract-load library: incremental cursors, state,
retries, pagination, schema inference) into JSONL files under ``<landing>/<source>/<table>/``;
from there the normal ingestion loads them, so lineage columns, the ledger, events, quarantine,
staging, tests and monitors are the same as for delivered files.
"""
