"""The source registry: every source declared once in ``models/staging/<source>/_<source>__sources.yml``.

This module reads and validates those dbt sources files (their ``config.meta`` blocks) for the
Python side of the platform: ingestion reads where files land and how to parse them, and
``dataops sources sync`` derives the staging models and their tests from the same declaration.
dbt reads the very same files for the staging macros, so there is no second copy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestration.settings import PROJECT_DIR

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
FORMAT_EXTENSIONS = {"csv": ("csv", "csv.gz"), "jsonl": ("jsonl", "jsonl.gz", "json"), "parquet": ("parquet",)}
LINEAGE_COLUMNS = ("_file_name", "_file_hash", "_batch_id", "_loaded_at")


class DeclarationError(ValueError):
    """A source declaration is missing or wrong; the message names the file, key and value."""


def _identifier(value: str) -> str:
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid identifier: expected lower snake_case letters, digits "
            "and underscores (at most 63 characters)"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvOptions(_Strict):
    delimiter: str = Field(",", min_length=1, max_length=1)
    header: bool = True
    encoding: Literal["utf-8", "latin-1", "utf-16"] = "utf-8"
    quote: str = Field('"', min_length=1, max_length=1)


class Landing(_Strict):
    path: str = Field(description="Folder under the landing root; {table} is the table name.")
    format: Literal["csv", "jsonl", "parquet"]
    options: CsvOptions = CsvOptions()
    pattern: str | None = Field(None, description="Glob of the files to load; default by format.")

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError(f"{value!r} must be a folder relative to the landing root")
        return value


class Dedupe(_Strict):
    latest_by: str

    _check = field_validator("latest_by")(classmethod(lambda cls, v: _identifier(v)))


class DerivedColumn(_Strict):
    name: str
    expression: str
    data_type: str
    description: str = ""

    _check = field_validator("name")(classmethod(lambda cls, v: _identifier(v)))


class Relationship(_Strict):
    to: str = Field(description="The staging model the column refers to, e.g. stg_shop__customers.")
    field: str

    _check = field_validator("to", "field")(classmethod(lambda cls, v: _identifier(v)))


class ColumnMeta(_Strict):
    rename: str | None = None
    pii: bool = False
    not_null: bool = False
    accepted_values: list[str] | None = None
    relationship: Relationship | None = None

    @field_validator("rename")
    @classmethod
    def _rename(cls, value: str | None) -> str | None:
        return None if value is None else _identifier(value)


class Column(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    data_type: str
    description: str = ""
    meta: ColumnMeta = ColumnMeta()

    _check = field_validator("name")(classmethod(lambda cls, v: _identifier(v)))

    @property
    def staged_name(self) -> str:
        return self.meta.rename or self.name


class TableMeta(_Strict):
    primary_key: str
    dedupe: Dedupe | None = None
    derived: list[DerivedColumn] = []
    landing: dict[str, Any] = {}


class SourceMeta(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    owner: str | None = None
    landing: Landing


@dataclass(frozen=True)
class SourceTable:
    """One declared source table, with everything ingestion and staging need."""

    source: str
    name: str
    schema: str
    description: str
    landing: Landing
    primary_key: str
    dedupe: Dedupe | None
    columns: tuple[Column, ...]
    derived: tuple[DerivedColumn, ...]
    declared_in: Path

    @property
    def key(self) -> str:
        return f"{self.source}.{self.name}"

    @property
    def staging_model(self) -> str:
        return f"stg_{self.source}__{self.name}"

    def landing_dir(self, landing_root: Path) -> Path:
        return landing_root / self.landing.path.format(source=self.source, table=self.name)

    def landed_files(self, landing_root: Path) -> list[Path]:
        """Files waiting in the landing folder, in name order (daily batches sort by date)."""
        folder = self.landing_dir(landing_root)
        if not folder.is_dir():
            return []
        patterns = (
            [self.landing.pattern]
            if self.landing.pattern
            else [f"*.{ext}" for ext in FORMAT_EXTENSIONS[self.landing.format]]
        )
        found = {p for pattern in patterns for p in folder.glob(pattern) if p.is_file()}
        return sorted(found)


def _fail(path: Path, where: str, error: ValidationError | str) -> DeclarationError:
    if isinstance(error, str):
        return DeclarationError(f"{path}: {where}: {error}")
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        value = item.get("input")
        lines.append(f"  {where}.{location} = {value!r}: {item['msg']}")
    return DeclarationError(f"{path}: invalid source declaration\n" + "\n".join(lines))


def _meta(node: dict[str, Any]) -> dict[str, Any]:
    """dbt accepts meta at the top level or under config; both merge, config wins."""
    return {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}


def parse_sources_file(path: Path) -> list[SourceTable]:
    """Validate one sources YAML file and return its tables; raise DeclarationError on any fault."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise DeclarationError(f"{path}: not valid YAML: {error}") from error
    tables: list[SourceTable] = []
    for source in document.get("sources") or []:
        source_name = source.get("name")
        where = f"sources[{source_name}]"
        try:
            _identifier(source_name)
        except ValueError as error:
            raise _fail(path, f"{where}.name", str(error)) from None
        try:
            source_meta = SourceMeta.model_validate(_meta(source))
        except ValidationError as error:
            raise _fail(path, f"{where}.config.meta", error) from None
        for table in source.get("tables") or []:
            table_where = f"{where}.tables[{table.get('name')}]"
            try:
                _identifier(table.get("name"))
                table_meta = TableMeta.model_validate(_meta(table))
                landing = Landing.model_validate(
                    {**source_meta.landing.model_dump(exclude_none=True), **table_meta.landing}
                )
                columns = tuple(Column.model_validate(c) for c in table.get("columns") or [])
            except ValidationError as error:
                raise _fail(path, table_where, error) from None
            except ValueError as error:
                raise _fail(path, f"{table_where}.name", str(error)) from None
            if not columns:
                raise _fail(path, f"{table_where}.columns", "no columns declared")
            staged = [c.staged_name for c in columns]
            if table_meta.primary_key not in staged:
                raise _fail(
                    path,
                    f"{table_where}.config.meta.primary_key",
                    f"{table_meta.primary_key!r} is not a staged column; expected one of {staged}",
                )
            if table_meta.dedupe and table_meta.dedupe.latest_by not in staged:
                raise _fail(
                    path,
                    f"{table_where}.config.meta.dedupe.latest_by",
                    f"{table_meta.dedupe.latest_by!r} is not a staged column; expected one of {staged}",
                )
            tables.append(
                SourceTable(
                    source=source_name,
                    name=table["name"],
                    schema=source.get("schema") or source_name,
                    description=table.get("description", ""),
                    landing=landing,
                    primary_key=table_meta.primary_key,
                    dedupe=table_meta.dedupe,
                    columns=columns,
                    derived=tuple(table_meta.derived),
                    declared_in=path,
                )
            )
    return tables


def declaration_files(project_dir: Path = PROJECT_DIR) -> list[Path]:
    return sorted((project_dir / "models" / "staging").glob("*/_*__sources.yml"))


def load_registry(project_dir: Path = PROJECT_DIR) -> list[SourceTable]:
    """Every declared source table of the project, validated."""
    tables: list[SourceTable] = []
    for path in declaration_files(project_dir):
        tables.extend(parse_sources_file(path))
    seen: dict[str, Path] = {}
    for table in tables:
        if table.key in seen:
            raise DeclarationError(
                f"{table.declared_in}: source table {table.key} is also declared in {seen[table.key]}"
            )
        seen[table.key] = table.declared_in
    return tables


def select_tables(tables: Iterable[SourceTable], sources: Iterable[str] | None) -> list[SourceTable]:
    """Filter by source name or source.table; unknown names are an error."""
    tables = list(tables)
    if not sources:
        return tables
    wanted = set(sources)
    known = {t.source for t in tables} | {t.key for t in tables}
    unknown = wanted - known
    if unknown:
        raise DeclarationError(
            f"Unknown source(s) {sorted(unknown)}: declared are {sorted(known)}"
        )
    return [t for t in tables if t.source in wanted or t.key in wanted]
