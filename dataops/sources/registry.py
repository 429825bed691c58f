"""The source registry: every source declared in ``models/staging/<source>/_<source>__sources.yml``.

This module reads and validates those dbt sources files (their ``config.meta`` blocks) for the
Python side of the platform: ingestion reads where files land and how to parse them, and
``dataops sources sync`` derives the staging models and their tests from the same declaration.
dbt reads the very same files for the staging macros, so there is no second copy.

The declaration format is documented in docs/source-declarations.md. Every rule checked here is
also checked by the ``source_declaration`` macro on the dbt side (same patterns), so a declaration
that passes one passes the other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dataops.core.settings import PROJECT_DIR

# --- Patterns shared with the dbt macros (macros/utils/validate_*.sql) -------------------------
# A staged (output) name: lower snake_case.
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# A column name as delivered in a file (CSV headers such as "Contact ID" or "E-Mail"): letters,
# digits, spaces, hyphens, dots and underscores; no quotes, so quoting it is always safe.
SOURCE_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_ .\-]{0,62}")
DATA_TYPE = re.compile(r"[a-z][a-z0-9_ ]*(\([0-9]+( *, *[0-9]+)?\))?")
# A literal (accepted value, coded value): no quote, backslash or control character.
LITERAL = re.compile(r"[^'\\\x00-\x1f\x7f]{0,200}")
EXPRESSION_FORBIDDEN = re.compile(
    r";|--|/\*|\*/|\b(select|insert|update|delete|merge|drop|create|alter|truncate|attach|"
    r"detach|copy|pragma|call|grant|revoke|install|load|export|import|set|with)\b",
    re.IGNORECASE,
)
STRING_TYPES = ("varchar", "text", "string")
# Drafted descriptions start with this marker; `make lint` (project rules) fails until a person
# replaces each with a real description.
PLACEHOLDER = "TODO(describe)"

FORMAT_EXTENSIONS = {
    "csv": ("csv", "csv.gz", "csv.zst", "tsv", "txt"),
    "jsonl": ("jsonl", "jsonl.gz", "json", "ndjson", "json.gz", "ndjson.gz"),
    "parquet": ("parquet",),
}
LINEAGE_COLUMNS = ("_file_name", "_file_hash", "_batch_id", "_loaded_at")
CAST_FAILURES_COLUMN = "_cast_failures"
COLUMN_METRICS = ("null_rate", "distinct_count", "min", "max", "mean")
NUMERIC_METRICS = ("min", "max", "mean")
OTHER_METRICS = [m for m in COLUMN_METRICS if m not in NUMERIC_METRICS]
NUMERIC_TYPE = re.compile(
    r"(tinyint|smallint|integer|int|bigint|hugeint|decimal|numeric|double|float|real)"
)


class DeclarationError(ValueError):
    """A source declaration is missing or wrong; the message names the file, key and value."""


# --- Value checks (each message says what was expected) ----------------------------------------
def _identifier(value: str) -> str:
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid identifier: expected lower snake_case letters, digits "
            "and underscores (at most 63 characters)"
        )
    return value


def _source_column(value: str) -> str:
    if not isinstance(value, str) or not SOURCE_COLUMN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid column name: expected letters, digits, spaces, hyphens, "
            "dots and underscores, starting with a letter or underscore (at most 63 characters)"
        )
    return value


def _data_type(value: str) -> str:
    if not isinstance(value, str) or not DATA_TYPE.fullmatch(value.lower()):
        raise ValueError(
            f"{value!r} is not a valid type: expected a type name such as bigint, varchar, "
            "timestamp or decimal(18, 2)"
        )
    return value


def _allowed_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise ValueError(
            f"{value!r} is not a text value: quote it (YAML reads yes/no/true/false/on/off as "
            "booleans and ~ as null)"
        )
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str) or not LITERAL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an allowed value: expected text without quotes, backslashes or "
            "control characters (at most 200 characters)"
        )
    return value


def _expression(value: str) -> str:
    """One scalar SQL expression: no statement separators, comments or sub-queries."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not an expression: expected a SQL expression")
    # Blank out quoted literals and identifiers before looking for forbidden tokens.
    outside = re.sub(r"'[^']*'|\"[^\"]*\"", " 0 ", value)
    if "'" in outside or '"' in outside:
        raise ValueError(f"{value!r} has an unterminated quote: expected one SQL expression")
    if found := EXPRESSION_FORBIDDEN.search(outside):
        raise ValueError(
            f"{value!r} contains {found.group(0)!r}: expected one scalar SQL expression "
            "(no ;, comments or statements/sub-queries)"
        )
    depth = 0
    for char in outside:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if depth:
        raise ValueError(f"{value!r} has unbalanced parentheses: expected one SQL expression")
    return value


@cache
def _timezones() -> frozenset[str]:
    from zoneinfo import available_timezones

    return frozenset(available_timezones()) | {"UTC"}


def _timezone(value: str | None) -> str | None:
    if value is not None and value not in _timezones():
        raise ValueError(
            f"{value!r} is not a time zone: expected an IANA name such as UTC, Europe/Berlin or "
            "America/New_York"
        )
    return value


def _is_string_type(data_type: str) -> bool:
    return data_type.lower() in STRING_TYPES


def _is_timestamp_type(data_type: str) -> bool:
    lowered = data_type.lower()
    return (
        lowered.startswith("timestamp")
        and lowered not in ("timestamptz",)
        and "zone" not in lowered
    )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- Source level: where files land and how to read them -----------------------------------------
class CsvOptions(_Strict):
    delimiter: str = Field(",", min_length=1, max_length=1)
    header: bool = True
    encoding: Literal["utf-8", "latin-1", "utf-16"] = "utf-8"
    quote: str = Field('"', min_length=1, max_length=1)
    compression: Literal["auto", "none", "gzip", "zstd"] = "auto"


class Landing(_Strict):
    path: str = Field(description="Folder under the landing root; {table} is the table name.")
    format: Literal["csv", "jsonl", "parquet"]
    options: CsvOptions = CsvOptions()
    pattern: str | None = Field(None, description="Glob of the files to load; default by format.")
    # Ingestion policies (docs/source-declarations.md, "Schema drift and bad files"); a table may
    # override its source's value under config.meta.landing.
    schema_drift: Literal["additive", "strict"] = Field(
        "additive", description="additive: new columns load; strict: any difference quarantines"
    )
    duplicate_keys: Literal["quarantine", "keep"] = Field(
        "quarantine", description="a primary key twice in one file: quarantine it or keep both"
    )

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError(f"{value!r} must be a folder relative to the landing root")
        return value

    @model_validator(mode="after")
    def _options_fit_format(self) -> Landing:
        if self.format != "csv" and self.options.encoding != "utf-8":
            raise ValueError(
                f"options.encoding {self.options.encoding!r} with format {self.format!r}: "
                "expected utf-8 (only csv files may use another encoding)"
            )
        if self.format == "parquet" and self.options.compression not in ("auto", "none"):
            raise ValueError(
                f"options.compression {self.options.compression!r} with format parquet: "
                "expected auto (parquet files carry their own compression)"
            )
        return self


class FreshnessPeriod(_Strict):
    count: int = Field(gt=0)
    period: Literal["minute", "hour", "day"]

    @property
    def minutes(self) -> int:
        return self.count * {"minute": 1, "hour": 60, "day": 1440}[self.period]


class Freshness(_Strict):
    """dbt's freshness SLA (`config.freshness`), checked by `dbt source freshness`."""

    warn_after: FreshnessPeriod | None = None
    error_after: FreshnessPeriod | None = None
    filter: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Freshness:
        if (
            self.warn_after
            and self.error_after
            and self.warn_after.minutes > self.error_after.minutes
        ):
            raise ValueError(
                "warn_after is later than error_after: expected warn_after <= error_after"
            )
        return self


class SourceConfig(BaseModel):
    """The dbt keys of a source's or table's `config` the platform relies on (others pass)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    loaded_at_field: str | None = None
    freshness: Freshness | None = None

    _check = field_validator("loaded_at_field")(
        classmethod(lambda cls, v: v if v is None else _source_column(v))
    )


# --- Table level ---------------------------------------------------------------------------------
class Dedupe(_Strict):
    latest_by: str

    _check = field_validator("latest_by")(classmethod(lambda cls, v: _identifier(v)))


class DerivedColumn(_Strict):
    name: str
    expression: str
    data_type: str
    description: str = ""

    _check = field_validator("name")(classmethod(lambda cls, v: _identifier(v)))
    _check_expression = field_validator("expression")(classmethod(lambda cls, v: _expression(v)))
    _check_type = field_validator("data_type")(classmethod(lambda cls, v: _data_type(v)))


class Monitors(_Strict):
    """What the observability layer watches for this table (declared here, consumed there)."""

    volume: bool = False
    freshness: bool = False
    columns: dict[str, list[Literal["null_rate", "distinct_count", "min", "max", "mean"]]] = {}
    event_time: str | None = Field(
        None,
        description="staged timestamp column that dates each record (when it happened, not when "
        "it was loaded); Elementary's volume and freshness monitors bucket rows by it",
    )

    @field_validator("columns")
    @classmethod
    def _names(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name in value:
            _identifier(name)
        return value

    _check_event_time = field_validator("event_time")(
        classmethod(lambda cls, v: v if v is None else _identifier(v))
    )


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
    expression: str | None = Field(
        None, description="SQL over the raw columns, instead of the column."
    )
    safe_cast: bool | None = Field(
        None, description="try the cast; count failures (default: table's)"
    )
    trim: bool | None = Field(None, description="trim; empty becomes null (default: strings only)")
    case: Literal["lower", "upper"] | None = None
    values_map: dict[str, str] | None = Field(None, description="coded value -> staged value")
    timezone: str | None = Field(None, description="zone of a timestamp column, converted to UTC")

    @field_validator("rename")
    @classmethod
    def _rename(cls, value: str | None) -> str | None:
        return None if value is None else _identifier(value)

    @field_validator("accepted_values", mode="before")
    @classmethod
    def _accepted(cls, value: Any) -> list[str] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not value:
            raise ValueError(f"{value!r} is not a list: expected [value, ...]")
        return [_allowed_value(item) for item in value]

    @field_validator("values_map", mode="before")
    @classmethod
    def _map(cls, value: Any) -> dict[str, str] | None:
        if value is None:
            return None
        if not isinstance(value, dict) or not value:
            raise ValueError(f"{value!r} is not a mapping: expected {{code: value, ...}}")
        return {_allowed_value(key): _allowed_value(item) for key, item in value.items()}

    _check_expression = field_validator("expression")(
        classmethod(lambda cls, v: v if v is None else _expression(v))
    )
    _check_timezone = field_validator("timezone")(classmethod(lambda cls, v: _timezone(v)))


class Column(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    data_type: str
    description: str = ""
    meta: ColumnMeta = ColumnMeta()

    _check = field_validator("name")(classmethod(lambda cls, v: _source_column(v)))
    _check_type = field_validator("data_type")(classmethod(lambda cls, v: _data_type(v)))

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        if self.meta.rename is None and not IDENTIFIER.fullmatch(self.name):
            raise ValueError(
                f"column {self.name!r} is not a snake_case name: expected meta.rename with the "
                "staged name, e.g. rename: " + _snake_case(self.name)
            )
        if self.meta.pii and not _is_string_type(self.data_type):
            raise ValueError(
                f"pii column {self.name!r} has data_type {self.data_type!r}: PII is hashed to a "
                "string, expected data_type varchar"
            )
        if self.meta.case and not _is_string_type(self.data_type):
            raise ValueError(
                f"meta.case on column {self.name!r} of data_type {self.data_type!r}: expected a "
                "varchar column"
            )
        if self.meta.timezone and not _is_timestamp_type(self.data_type):
            raise ValueError(
                f"meta.timezone on column {self.name!r} of data_type {self.data_type!r}: expected "
                "a timestamp column"
            )
        return self

    @property
    def staged_name(self) -> str:
        return self.meta.rename or self.name

    @property
    def is_string(self) -> bool:
        return _is_string_type(self.data_type)

    @property
    def is_timestamp(self) -> bool:
        return _is_timestamp_type(self.data_type)


class TableMeta(_Strict):
    primary_key: tuple[str, ...] = Field(
        description="the column, or list of columns, that identifies a record"
    )
    dedupe: Dedupe | None = None
    derived: list[DerivedColumn] = []
    landing: dict[str, Any] = {}
    safe_cast: bool = False
    timezone: str | None = None
    monitors: Monitors | None = None
    reference: bool = Field(
        False, description="static reference data (no daily deliveries): no freshness monitor"
    )
    extract: ExtractTable | None = None

    _check_timezone = field_validator("timezone")(classmethod(lambda cls, v: _timezone(v)))

    @field_validator("primary_key", mode="before")
    @classmethod
    def _key_columns(cls, value: Any) -> tuple[str, ...]:
        """One column (a string) or a composite key (a list of distinct columns)."""
        columns = [value] if isinstance(value, str) else value
        if not isinstance(columns, list | tuple) or not columns:
            raise ValueError(
                f"{value!r} is not a key: expected a column name or a list of column names"
            )
        for column in columns:
            if not isinstance(column, str):
                raise ValueError(f"{column!r} in primary_key is not a column name")
        if len(set(columns)) != len(columns):
            raise ValueError(f"{value!r} names a column twice: expected each key column once")
        return tuple(columns)


# --- Extracted sources: loaded with dlt from a database or an API into the landing folder --------
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")


def _env_name(value: str | None) -> str | None:
    if value is not None and not ENV_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an environment variable name: expected upper case letters, "
            "digits and underscores (the value itself never goes in this file)"
        )
    return value


class ExtractSource(_Strict):
    """Where a source is extracted from; secrets are named by environment variable only."""

    kind: Literal["postgres", "http_api"]
    credentials_env: str | None = Field(
        None, description="postgres: env var holding the connection URL"
    )
    base_url_env: str | None = Field(None, description="http_api: env var holding the base URL")
    token_env: str | None = Field(None, description="http_api: env var of a bearer token")
    schema_name: str = Field("public", alias="schema", description="postgres: the schema")
    max_attempts: int = Field(5, ge=1, le=20, description="http_api: attempts per request")
    schedule: str = Field("0 * * * *", description="cron of its Dagster extract schedule (UTC)")

    _check_env = field_validator("credentials_env", "base_url_env", "token_env")(
        classmethod(lambda cls, v: _env_name(v))
    )

    @model_validator(mode="after")
    def _needs(self) -> ExtractSource:
        needed = {"postgres": "credentials_env", "http_api": "base_url_env"}[self.kind]
        if getattr(self, needed) is None:
            raise ValueError(
                f"kind {self.kind} needs {needed}: the name of the environment variable that "
                "holds it"
            )
        return self


class ExtractTable(_Strict):
    """What to extract for one table: a database table or an API resource."""

    table: str | None = Field(None, description="postgres: the table (default: the table name)")
    cursor: str | None = Field(
        None, description="incremental by this column/field (increasing); none: full load"
    )
    path: str | None = Field(None, description="http_api: the resource path, e.g. /orders")
    records: str | None = Field(None, description="http_api: key of the records list in a page")
    paginate: Literal["page", "cursor", "none"] = "page"
    page_param: str = "page"
    page_size: int = Field(100, gt=0, le=10_000)
    page_size_param: str = "per_page"
    next_cursor: str = Field("next_cursor", description="cursor paging: field of the next cursor")
    cursor_param: str = Field("cursor", description="cursor paging: query parameter to send it")
    since_param: str | None = Field(
        None, description="http_api: query parameter that asks for records changed since"
    )
    initial_value: str | None = Field(None, description="first cursor value (default: all)")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or "://" in value):
            raise ValueError(f"{value!r} is not a path: expected /resource relative to base URL")
        return value


class SourceMeta(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    owner: str | None = None
    landing: Landing
    timezone: str | None = None
    monitors: Monitors | None = Field(None, description="default for tables without their own")
    extract: ExtractSource | None = None

    _check_timezone = field_validator("timezone")(classmethod(lambda cls, v: _timezone(v)))


def _snake_case(name: str) -> str:
    snake = re.sub(r"[^a-z0-9]+", "_", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    snake = snake.strip("_") or "column"
    return f"c_{snake}" if snake[0].isdigit() else snake[:63]


@dataclass(frozen=True)
class SourceTable:
    """One declared source table, with everything ingestion and staging need."""

    source: str
    name: str
    schema: str
    description: str
    landing: Landing
    primary_key: tuple[str, ...]
    dedupe: Dedupe | None
    columns: tuple[Column, ...]
    derived: tuple[DerivedColumn, ...]
    declared_in: Path
    safe_cast: bool = False
    timezone: str | None = None
    monitors: Monitors | None = None
    freshness: Freshness | None = None
    loaded_at_field: str | None = None
    reference: bool = False
    extract_source: ExtractSource | None = None
    extract: ExtractTable | None = None

    @property
    def key(self) -> str:
        return f"{self.source}.{self.name}"

    @property
    def staging_model(self) -> str:
        return f"stg_{self.source}__{self.name}"

    @property
    def key_label(self) -> str:
        """The primary key for messages: ``order_id`` or ``(supply_id, sku)``."""
        if len(self.primary_key) == 1:
            return self.primary_key[0]
        return f"({', '.join(self.primary_key)})"

    def column_safe_cast(self, column: Column) -> bool:
        """Whether staging tries the cast of this column and counts its failures."""
        if column.is_string:
            return False
        return self.safe_cast if column.meta.safe_cast is None else column.meta.safe_cast

    def column_timezone(self, column: Column) -> str | None:
        """The zone a timestamp column is delivered in (None or UTC: no conversion)."""
        if not column.is_timestamp:
            return None
        return column.meta.timezone or self.timezone

    @property
    def has_safe_casts(self) -> bool:
        return any(self.column_safe_cast(c) for c in self.columns)

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
        return DeclarationError(f"{path}: invalid source declaration\n  {where}: {error}")
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        value = item.get("input")
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key: check its spelling (docs/source-declarations.md lists the keys)"
        lines.append(f"  {where}{'.' if location else ''}{location} = {value!r}: {message}")
    return DeclarationError(f"{path}: invalid source declaration\n" + "\n".join(lines))


def _meta(node: dict[str, Any]) -> dict[str, Any]:
    """dbt accepts meta at the top level or under config; both merge, config wins."""
    return {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}


def _config(node: dict[str, Any]) -> dict[str, Any]:
    """The dbt config keys (top level or under config), without meta."""
    config = {k: node[k] for k in ("loaded_at_field", "freshness") if k in node}
    config.update({k: v for k, v in (node.get("config") or {}).items() if k != "meta"})
    return config


def _validate(model: type[BaseModel], data: Any, path: Path, where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise _fail(path, where, error) from None


def _check_name(check, value: Any, path: Path, where: str) -> None:
    try:
        check(value)
    except ValueError as error:
        raise _fail(path, where, str(error)) from None


def _parse_table(
    path: Path,
    source: dict[str, Any],
    source_meta: SourceMeta,
    source_config: SourceConfig,
    table: dict[str, Any],
) -> SourceTable:
    source_name = source["name"]
    where = f"sources[{source_name}].tables[{table.get('name')}]"
    _check_name(_identifier, table.get("name"), path, f"{where}.name")
    table_meta = _validate(TableMeta, _meta(table), path, f"{where}.config.meta")
    table_config = _validate(SourceConfig, _config(table), path, f"{where}.config")
    landing = _validate(
        Landing,
        {**source_meta.landing.model_dump(exclude_none=True), **table_meta.landing},
        path,
        f"{where}.config.meta.landing",
    )
    columns = []
    for column in table.get("columns") or []:
        name = column.get("name") if isinstance(column, dict) else column
        columns.append(_validate(Column, column, path, f"{where}.columns[{name}]"))
    if not columns:
        raise _fail(path, f"{where}.columns", "no columns declared: expected a list of columns")

    staged = [c.staged_name for c in columns]
    duplicates = sorted({name for name in staged if staged.count(name) > 1})
    if duplicates:
        raise _fail(
            path,
            f"{where}.columns",
            f"staged column names {duplicates} are declared twice: "
            "expected each name (after rename) once",
        )
    reserved = [
        c.staged_name for c in columns if c.staged_name in LINEAGE_COLUMNS + (CAST_FAILURES_COLUMN,)
    ]
    if reserved:
        raise _fail(
            path,
            f"{where}.columns",
            f"{reserved} are reserved for the platform's lineage columns: expected a rename",
        )
    for derived in table_meta.derived:
        if derived.name in staged:
            raise _fail(
                path,
                f"{where}.config.meta.derived[{derived.name}].name",
                f"{derived.name!r} is already a staged column: expected a new name",
            )
    checks = [("primary_key", column) for column in table_meta.primary_key]
    if table_meta.dedupe:
        checks.append(("dedupe.latest_by", table_meta.dedupe.latest_by))
    for key, value in checks:
        if value not in staged:
            raise _fail(
                path,
                f"{where}.config.meta.{key}",
                f"{value!r} is not a staged column: expected one of {staged}",
            )
    monitors = table_meta.monitors or source_meta.monitors
    if monitors:
        types = {c.staged_name: c.data_type for c in columns}
        types.update({d.name: d.data_type for d in table_meta.derived})
        for name, metrics in monitors.columns.items():
            if name not in types:
                raise _fail(
                    path,
                    f"{where}.config.meta.monitors.columns.{name}",
                    f"{name!r} is not a staged column: expected one of {list(types)}",
                )
            numeric = NUMERIC_TYPE.match(types[name].lower())
            for metric in metrics:
                if metric in NUMERIC_METRICS and not numeric:
                    raise _fail(
                        path,
                        f"{where}.config.meta.monitors.columns.{name}",
                        f"metric {metric!r} on data_type {types[name]!r}: expected a numeric "
                        f"column (or one of {OTHER_METRICS})",
                    )
        if monitors.event_time and not _is_timestamp_type(types.get(monitors.event_time, "")):
            timestamps = [n for n, data_type in types.items() if _is_timestamp_type(data_type)]
            raise _fail(
                path,
                f"{where}.config.meta.monitors.event_time",
                f"{monitors.event_time!r} is not a staged timestamp column: expected one of "
                f"{timestamps}",
            )
    if source_meta.extract:
        expected_path = f"{source_name}/{{table}}"
        if landing.format != "jsonl" or landing.path != expected_path:
            raise _fail(
                path,
                f"{where}.config.meta.landing",
                f"an extracted source ({source_meta.extract.kind}) lands JSONL files written by "
                f"dlt in <landing>/<source>/<table>/: expected path {expected_path!r} and "
                f"format 'jsonl', got {landing.path!r} and {landing.format!r}",
            )
        extract = table_meta.extract or ExtractTable()
        if source_meta.extract.kind == "http_api" and not extract.path:
            raise _fail(
                path,
                f"{where}.config.meta.extract.path",
                "an http_api table needs the resource path, e.g. extract: {path: /orders}",
            )
        raw_names = [c.name for c in columns]
        if extract.cursor and extract.cursor not in raw_names:
            raise _fail(
                path,
                f"{where}.config.meta.extract.cursor",
                f"{extract.cursor!r} is not a declared column: expected one of {raw_names}",
            )
    elif table_meta.extract:
        raise _fail(
            path,
            f"{where}.config.meta.extract",
            "the source has no config.meta.extract (kind: postgres or http_api): declare where "
            "it is extracted from, or remove the table's extract block",
        )
    loaded_at_field = table_config.loaded_at_field or source_config.loaded_at_field
    if loaded_at_field and loaded_at_field not in LINEAGE_COLUMNS + tuple(c.name for c in columns):
        raise _fail(
            path,
            f"{where}.config.loaded_at_field",
            f"{loaded_at_field!r} is not a raw column: expected _loaded_at or a declared column",
        )
    return SourceTable(
        source=source_name,
        name=table["name"],
        schema=source.get("schema") or source_name,
        description=table.get("description", ""),
        landing=landing,
        primary_key=table_meta.primary_key,
        dedupe=table_meta.dedupe,
        columns=tuple(columns),
        derived=tuple(table_meta.derived),
        declared_in=path,
        safe_cast=table_meta.safe_cast,
        timezone=table_meta.timezone or source_meta.timezone,
        monitors=monitors,
        freshness=table_config.freshness or source_config.freshness,
        loaded_at_field=loaded_at_field,
        reference=table_meta.reference,
        extract_source=source_meta.extract,
        extract=(table_meta.extract or ExtractTable()) if source_meta.extract else None,
    )


def parse_sources_file(path: Path) -> list[SourceTable]:
    """Validate one sources YAML file and return its tables; raise DeclarationError on any fault."""
    try:
        # libyaml's safe loader when available: same result, several times faster on big files
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}  # noqa: S506
    except yaml.YAMLError as error:
        raise DeclarationError(f"{path}: not valid YAML: {error}") from error
    tables: list[SourceTable] = []
    for source in document.get("sources") or []:
        source_name = source.get("name")
        where = f"sources[{source_name}]"
        _check_name(_identifier, source_name, path, f"{where}.name")
        source_meta = _validate(SourceMeta, _meta(source), path, f"{where}.config.meta")
        source_config = _validate(SourceConfig, _config(source), path, f"{where}.config")
        for table in source.get("tables") or []:
            tables.append(_parse_table(path, source, source_meta, source_config, table))
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
                f"{table.declared_in}: source table {table.key} is also declared in "
                f"{seen[table.key]}"
            )
        seen[table.key] = table.declared_in
    return tables


def select_tables(
    tables: Iterable[SourceTable], sources: Iterable[str] | None
) -> list[SourceTable]:
    """Filter by source name or source.table; unknown names are an error."""
    tables = list(tables)
    if not sources:
        return tables
    wanted = set(sources)
    known = {t.source for t in tables} | {t.key for t in tables}
    unknown = wanted - known
    if unknown:
        raise DeclarationError(f"Unknown source(s) {sorted(unknown)}: declared are {sorted(known)}")
    return [t for t in tables if t.source in wanted or t.key in wanted]
