"""Other engines for the same dbt project: Apache Spark and PostgreSQL next to embedded DuckDB.

The dbt profile (profiles/profiles.yml, outputs ``spark`` and ``postgres``) is the one place that
says how to reach each engine; :mod:`dataops.engines.profile` renders it for Python. The
loaders put the landed files into the same raw tables (same columns, same lineage columns) that
the DuckDB ingestion writes, reading the same source declarations, so one dbt project builds on
every engine. :mod:`dataops.engines.checksum` compares the marts across engines.
"""

ENGINES = ("duckdb", "spark", "postgres")
