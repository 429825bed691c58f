"""Load landed files into Spark raw tables, driven by the same source declarations.

Spark reads the files itself (so on a cluster the work is distributed): CSV and JSON columns as
text, Parquet with its own types, exactly as the DuckDB ingestion does, plus the same lineage
columns (``_file_name``, ``_file_hash``, ``_batch_id``, ``_loaded_at``). Tables are plain Parquet
tables in the session's catalog (``<source schema>.<table>``). A file whose content hash is
already in the table is skipped, so loading twice loads nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataops.engines.profile import ProfileError, profile_output
from dataops.ingestion.loader import TableOutcome, file_sha256
from dataops.sources.registry import SourceTable

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

TARGET = "spark"


def session_config(output: dict[str, Any]) -> dict[str, str]:
    """The Spark configuration of a profile output (its server_side_parameters), as dbt uses it."""
    if output.get("method") != "session":
        raise ProfileError(
            f"profiles/profiles.yml: output '{TARGET}' has method {output.get('method')!r}; the "
            "loader starts a local Spark session and needs method: session (on a cluster, load "
            "with the cluster's own jobs)."
        )
    config = {str(k): str(v) for k, v in (output.get("server_side_parameters") or {}).items()}
    config["spark.sql.ansi.enabled"] = "false"  # dbt-spark forces the same
    return config


@contextmanager
def spark_session() -> Iterator[SparkSession]:
    """A Spark session configured like dbt's ``spark`` target (same metastore and warehouse)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ProfileError(
            "pyspark is not installed: install the engines extra (pip install '.[engines]')."
        ) from error
    config = session_config(profile_output(TARGET))
    warehouse = config.get("spark.sql.warehouse.dir")
    if warehouse:  # derby.log and the metastore live beside the warehouse folder
        Path(warehouse).parent.mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in config.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


def _read(spark: SparkSession, table: SourceTable, paths: list[str]) -> DataFrame:
    landing = table.landing
    if landing.format == "csv":
        options = landing.options
        return (
            spark.read.option("header", options.header)
            .option("sep", options.delimiter)
            .option("quote", options.quote)
            .option("escape", options.quote)  # RFC 4180: a quote inside a field is doubled
            .option("encoding", options.encoding)
            .option("multiLine", True)
            .option("inferSchema", False)  # text, as delivered; staging casts
            .csv(paths)
        )
    if landing.format == "jsonl":
        from pyspark.sql.types import StringType, StructField, StructType

        schema = StructType([StructField(c.name, StringType()) for c in table.columns])
        return spark.read.schema(schema).json(paths)
    return spark.read.parquet(*paths)


def _known_hashes(spark: SparkSession, relation: str) -> set[str]:
    if not spark.catalog.tableExists(relation):
        return set()
    rows = spark.sql(f"select distinct _file_hash from {relation}").collect()
    return {row[0] for row in rows}


def load_table(
    spark: SparkSession, table: SourceTable, landing_root: Path, batch_id: str
) -> TableOutcome:
    """Append the new landed files of one table to ``<schema>.<table>``; skip known contents."""
    from pyspark.sql import functions as F

    outcome = TableOutcome(key=table.key)
    relation = f"`{table.schema}`.`{table.name}`"
    spark.sql(f"create database if not exists `{table.schema}`")
    known = _known_hashes(spark, relation)
    new: dict[str, str] = {}
    for path in table.landed_files(landing_root):
        file_hash = file_sha256(path)
        if file_hash in known or file_hash in new.values():
            outcome.files_skipped += 1
            continue
        new[str(path)] = file_hash
    if not new:
        return outcome
    hashes = F.create_map(*[F.lit(x) for name, h in new.items() for x in (Path(name).name, h)])
    loaded_at = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    frame = _read(spark, table, list(new))
    frame = (
        frame.withColumn("_file_name", F.col("_metadata.file_name"))
        .withColumn("_file_hash", F.element_at(hashes, F.col("_file_name")))
        .withColumn("_batch_id", F.lit(batch_id))
        .withColumn("_loaded_at", F.to_timestamp(F.lit(loaded_at)))
    )
    frame = frame.cache()
    outcome.rows_loaded = frame.count()
    frame.write.format("parquet").mode("append").saveAsTable(relation)
    frame.unpersist()
    outcome.files_loaded = len(new)
    return outcome
