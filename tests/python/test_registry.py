"""Declarations are validated before anything runs: every wrong declaration is refused with a
message naming the file, the source/table/column, the bad value and what was expected."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from dataops.ingestion.loader import ingest
from dataops.sources.registry import DeclarationError, load_registry, parse_sources_file
from tests.python.staging_features import declaration, write_declaration


def _source(doc: dict) -> dict:
    return doc["sources"][0]


def _table(doc: dict) -> dict:
    return _source(doc)["tables"][0]


def _column(doc: dict, name: str) -> dict:
    return next(c for c in _table(doc)["columns"] if c["name"] == name)


def _landing(doc: dict) -> dict:
    return _source(doc)["config"]["meta"]["landing"]


TABLE = "sources[lab].tables[accounts]"

# (edit of the valid declaration, where the error points, the bad value, what was expected)
INVALID: dict[str, tuple[Callable[[dict], None], str, str, str]] = {
    "source-name": (
        lambda d: _source(d).update(name="Lab-Source"),
        "sources[Lab-Source].name",
        "'Lab-Source'",
        "expected lower snake_case",
    ),
    "table-name": (
        lambda d: _table(d).update(name="accounts; drop"),
        "sources[lab].tables[accounts; drop].name",
        "'accounts; drop'",
        "expected lower snake_case",
    ),
    "format": (
        lambda d: _landing(d).update(format="xml"),
        "sources[lab].config.meta.landing.format",
        "'xml'",
        "'csv', 'jsonl' or 'parquet'",
    ),
    "landing-outside-root": (
        lambda d: _landing(d).update(path="../etc"),
        "sources[lab].config.meta.landing.path",
        "'../etc'",
        "relative to the landing root",
    ),
    "misspelt-option": (
        lambda d: _landing(d)["options"].update(delimter=","),
        "sources[lab].config.meta.landing.options.delimter",
        "','",
        "unknown key",
    ),
    "two-character-delimiter": (
        lambda d: _landing(d)["options"].update(delimiter=";;"),
        "sources[lab].config.meta.landing.options.delimiter",
        "';;'",
        "at most 1 character",
    ),
    "encoding": (
        lambda d: _landing(d)["options"].update(encoding="cp1252"),
        "sources[lab].config.meta.landing.options.encoding",
        "'cp1252'",
        "'utf-8', 'latin-1' or 'utf-16'",
    ),
    "compression": (
        lambda d: _landing(d)["options"].update(compression="rar"),
        "sources[lab].config.meta.landing.options.compression",
        "'rar'",
        "'gzip'",
    ),
    "encoding-on-jsonl": (
        lambda d: _landing(d).update(format="jsonl"),
        "sources[lab].config.meta.landing",
        "latin-1",
        "only csv files may use another encoding",
    ),
    "timezone": (
        lambda d: _source(d)["config"]["meta"].update(timezone="Mars/Base"),
        "sources[lab].config.meta.timezone",
        "'Mars/Base'",
        "expected an IANA name",
    ),
    "freshness-period": (
        lambda d: _source(d)["config"]["freshness"]["warn_after"].update(period="week"),
        "sources[lab].config.freshness.warn_after.period",
        "'week'",
        "'minute', 'hour' or 'day'",
    ),
    "freshness-order": (
        lambda d: _source(d)["config"]["freshness"]["warn_after"].update(count=5),
        "sources[lab].config.freshness",
        "'count': 5",
        "expected warn_after <= error_after",
    ),
    "loaded-at-field": (
        lambda d: _source(d)["config"].update(loaded_at_field="loaded"),
        f"{TABLE}.config.loaded_at_field",
        "'loaded'",
        "expected _loaded_at or a declared column",
    ),
    "primary-key": (
        lambda d: _table(d)["config"]["meta"].update(primary_key="id"),
        f"{TABLE}.config.meta.primary_key",
        "'id'",
        "expected one of ['account_id'",
    ),
    "primary-key-in-list": (
        lambda d: _table(d)["config"]["meta"].update(primary_key=["account_id", "sku"]),
        f"{TABLE}.config.meta.primary_key",
        "'sku'",
        "expected one of ['account_id'",
    ),
    "primary-key-twice": (
        lambda d: _table(d)["config"]["meta"].update(primary_key=["account_id", "account_id"]),
        f"{TABLE}.config.meta.primary_key",
        "['account_id', 'account_id']",
        "expected each key column once",
    ),
    "dedupe-column": (
        lambda d: _table(d)["config"]["meta"].update(dedupe={"latest_by": "changed_at"}),
        f"{TABLE}.config.meta.dedupe.latest_by",
        "'changed_at'",
        "expected one of ['account_id'",
    ),
    "derived-expression": (
        lambda d: _table(d)["config"]["meta"]["derived"][0].update(expression="(select 1)"),
        f"{TABLE}.config.meta.derived.0.expression",
        "'(select 1)'",
        "expected one scalar SQL",
    ),
    "derived-name-clash": (
        lambda d: _table(d)["config"]["meta"]["derived"][0].update(name="balance"),
        f"{TABLE}.config.meta.derived[balance].name",
        "'balance'",
        "expected a new name",
    ),
    "monitor-column": (
        lambda d: _table(d)["config"]["meta"]["monitors"]["columns"].update(amount=["mean"]),
        f"{TABLE}.config.meta.monitors.columns.amount",
        "'amount'",
        "expected one of ['account_id'",
    ),
    "monitor-metric": (
        lambda d: _table(d)["config"]["meta"]["monitors"]["columns"].update(balance=["median"]),
        f"{TABLE}.config.meta.monitors.columns.balance.0",
        "'median'",
        "'null_rate'",
    ),
    "monitor-metric-type": (
        lambda d: _table(d)["config"]["meta"]["monitors"]["columns"].update(status=["mean"]),
        f"{TABLE}.config.meta.monitors.columns.status",
        "'varchar'",
        "expected a numeric column",
    ),
    "monitor-event-time": (
        lambda d: _table(d)["config"]["meta"]["monitors"].update(event_time="status"),
        f"{TABLE}.config.meta.monitors.event_time",
        "'status'",
        "is not a staged timestamp column: expected one of ['updated_at', 'created_at']",
    ),
    "monitor-key": (
        lambda d: _table(d)["config"]["meta"]["monitors"].update(rows=True),
        f"{TABLE}.config.meta.monitors.rows",
        "True",
        "unknown key",
    ),
    "injection-in-column-name": (
        lambda d: _column(d, "status").update(name='status" from x; drop table y; --'),
        f'{TABLE}.columns[status" from x; drop table y; --].name',
        "'status\" from x; drop table y; --'",
        "expected letters, digits, spaces",
    ),
    "column-needs-rename": (
        lambda d: _column(d, "Account ID")["meta"].pop("rename"),
        f"{TABLE}.columns[Account ID]",
        "Account ID",
        "expected meta.rename with the staged name, e.g. rename: account_id",
    ),
    "rename": (
        lambda d: _column(d, "E-Mail")["meta"].update(rename="Email"),
        f"{TABLE}.columns[E-Mail].meta.rename",
        "'Email'",
        "expected lower snake_case",
    ),
    "duplicate-staged-name": (
        lambda d: _column(d, "country")["meta"].update(rename="status"),
        f"{TABLE}.columns",
        "['status']",
        "expected each name (after rename) once",
    ),
    "reserved-name": (
        lambda d: _column(d, "country")["meta"].update(rename="_loaded_at"),
        f"{TABLE}.columns",
        "['_loaded_at']",
        "reserved for the platform",
    ),
    "injection-in-type": (
        lambda d: _column(d, "logins").update(data_type="integer); drop table y; --"),
        f"{TABLE}.columns[logins].data_type",
        "'integer); drop table y; --'",
        "expected a type name",
    ),
    "injection-in-accepted-value": (
        lambda d: _column(d, "status")["meta"]["accepted_values"].append("x') or 1=1 --"),
        f"{TABLE}.columns[status].meta.accepted_values",
        '"x\') or 1=1 --"',
        "expected text without quotes, backslashes or control characters",
    ),
    "boolean-accepted-value": (
        lambda d: _column(d, "status")["meta"].update(accepted_values=["yes", True]),
        f"{TABLE}.columns[status].meta.accepted_values",
        "True is not a text value",
        "quote it",
    ),
    "injection-in-coded-value": (
        lambda d: _column(d, "status")["meta"]["values_map"].update(B="x' || (select 1) || '"),
        f"{TABLE}.columns[status].meta.values_map",
        "\"x' || (select 1) || '\"",
        "expected text without quotes",
    ),
    "coded-values-not-a-map": (
        lambda d: _column(d, "status")["meta"].update(values_map=["A", "I"]),
        f"{TABLE}.columns[status].meta.values_map",
        "['A', 'I']",
        "expected {code: value, ...}",
    ),
    "injection-in-expression": (
        lambda d: _column(d, "balance")["meta"].update(expression="1); drop table x; --"),
        f"{TABLE}.columns[balance].meta.expression",
        "'1); drop table x; --'",
        "contains ';'",
    ),
    "unbalanced-expression": (
        lambda d: _column(d, "balance")["meta"].update(expression="replace(balance, ',', '.'"),
        f"{TABLE}.columns[balance].meta.expression",
        "replace(balance",
        "unbalanced parentheses",
    ),
    "case": (
        lambda d: _column(d, "country")["meta"].update(case="title"),
        f"{TABLE}.columns[country].meta.case",
        "'title'",
        "'lower' or 'upper'",
    ),
    "case-on-number": (
        lambda d: _column(d, "logins")["meta"].update(case="lower"),
        f"{TABLE}.columns[logins]",
        "'integer'",
        "expected a varchar column",
    ),
    "pii-on-number": (
        lambda d: _column(d, "logins")["meta"].update(pii=True),
        f"{TABLE}.columns[logins]",
        "'integer'",
        "expected data_type varchar",
    ),
    "timezone-on-text": (
        lambda d: _column(d, "country")["meta"].update(timezone="UTC"),
        f"{TABLE}.columns[country]",
        "'varchar'",
        "expected a timestamp column",
    ),
    "relationship": (
        lambda d: _column(d, "country")["meta"].update(relationship={"to": "countries"}),
        f"{TABLE}.columns[country].meta.relationship.field",
        "{'to': 'countries'}",
        "Field required",
    ),
    "misspelt-column-key": (
        lambda d: _column(d, "country")["meta"].update(not_nul=True),
        f"{TABLE}.columns[country].meta.not_nul",
        "True",
        "unknown key",
    ),
    "no-columns": (
        lambda d: _table(d).update(columns=[]),
        f"{TABLE}.columns",
        "no columns declared",
        "expected a list of columns",
    ),
}


def test_the_feature_declaration_is_valid(tmp_path: Path):
    (table,) = parse_sources_file(write_declaration(tmp_path))
    assert table.key == "lab.accounts"
    assert [c.staged_name for c in table.columns][:2] == ["account_id", "email_hash"]
    assert table.landing.options.delimiter == ";" and table.landing.options.encoding == "latin-1"
    assert table.timezone == "Europe/Berlin"  # inherited from the source
    columns = {c.staged_name: c for c in table.columns}
    assert table.column_timezone(columns["updated_at"]) == "Europe/Berlin"
    assert table.column_timezone(columns["created_at"]) == "UTC"
    assert table.column_safe_cast(columns["balance"]) and not table.column_safe_cast(
        columns["is_vip"]
    )
    assert table.monitors.model_dump() == {
        "volume": True,
        "freshness": True,
        "columns": {"balance": ["null_rate", "mean"]},
        "event_time": "created_at",
    }
    assert table.freshness.warn_after.minutes == 1440


def test_source_level_monitors_apply_to_tables_without_their_own(tmp_path: Path):
    doc = declaration()
    _table(doc)["config"]["meta"].pop("monitors")
    _source(doc)["config"]["meta"]["monitors"] = {"volume": True}
    (table,) = parse_sources_file(write_declaration(tmp_path, doc))
    assert table.monitors.volume and not table.monitors.freshness


def test_the_projects_own_declarations_are_valid():
    assert {t.key for t in load_registry()} >= {"shop.orders", "payments.payments", "web.sessions"}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_an_invalid_declaration_is_refused_with_file_location_value_and_expectation(
    tmp_path: Path, case: str
):
    edit, where, value, expected = INVALID[case]
    doc = declaration()
    edit(doc)
    path = write_declaration(tmp_path, doc)
    with pytest.raises(DeclarationError) as raised:
        parse_sources_file(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: invalid source declaration"), message
    assert where in message, message
    assert value in message, message
    assert expected in message, message


def test_the_same_table_declared_twice_names_both_files(tmp_path: Path):
    write_declaration(tmp_path)
    copy = tmp_path / "models" / "staging" / "lab2" / "_lab2__sources.yml"
    copy.parent.mkdir()
    copy.write_text((tmp_path / "models/staging/lab/_lab__sources.yml").read_text())
    with pytest.raises(DeclarationError, match="lab.accounts is also declared in"):
        load_registry(tmp_path)


def _declaration_with_options(options: dict, pattern: str) -> dict:
    doc = declaration()
    _landing(doc).update(options=options, pattern=pattern)
    if not options.get("header", True):
        # Without a header, the columns without an `expression` name the fields in order.
        _column(doc, "balance")["meta"].pop("expression")
    return doc


@pytest.mark.parametrize(
    ("options", "file_name", "write"),
    [
        (
            {"delimiter": ";", "encoding": "latin-1", "compression": "gzip"},
            "accounts.csv.gz",
            lambda path, text: path.write_bytes(gzip.compress(text.encode("latin-1"))),
        ),
        (
            {"delimiter": "|", "header": False},
            "accounts.txt",
            lambda path, text: path.write_text(text.split("\n", 1)[1].replace(";", "|")),
        ),
    ],
    ids=["latin-1-semicolon-gzip", "pipe-without-header"],
)
def test_ingestion_honours_the_declared_format_options(tmp_path: Path, options, file_name, write):
    doc = _declaration_with_options(options, "accounts*")
    (table,) = parse_sources_file(write_declaration(tmp_path, doc))
    header = ";".join(c.name for c in table.columns)
    text = (
        header + "\n" + "1;Zoë@example.com;A;de;1,5;3;Y;2024-01-01 00:00:00;2024-01-01 00:00:00\n"
    )
    landing = tmp_path / "landing"
    folder = table.landing_dir(landing)
    folder.mkdir(parents=True)
    write(folder / file_name, text)
    summary = ingest(tmp_path / "warehouse.duckdb", landing, [table])
    assert summary.errors == [] and summary.rows_loaded == 1
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        row = con.execute('select "Account ID", "E-Mail", balance from raw_lab.accounts').fetchone()
    assert row == ("1", "Zoë@example.com", "1,5")


def test_a_composite_primary_key_is_a_list_of_staged_columns(tmp_path: Path):
    doc = declaration()
    _table(doc)["config"]["meta"]["primary_key"] = ["account_id", "country"]
    (table,) = parse_sources_file(write_declaration(tmp_path, doc))
    assert table.primary_key == ("account_id", "country")
    assert table.key_label == "(account_id, country)"
    _table(doc)["config"]["meta"]["primary_key"] = "account_id"
    (table,) = parse_sources_file(write_declaration(tmp_path, doc))
    assert (table.primary_key, table.key_label) == (("account_id",), "account_id")
