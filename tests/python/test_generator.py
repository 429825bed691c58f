"""The sample-data generator: file layout, formats, integrity, reproducibility, safety."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from dataops.sample_data.generator import TABLES, GenerationSummary, generate, main
from tests.python.conftest import dataops

ORDER_ITEMS, DAYS, START = 5_000, 10, date(2025, 1, 1)
REPO_ROOT = Path(__file__).resolve().parents[2]

COLUMNS = {
    "shop/customers": [
        "customer_id", "first_name", "last_name", "email", "country_code", "signed_up_at",
        "updated_at",
    ],
    "shop/products": [
        "product_id", "product_name", "category", "unit_price", "is_active", "updated_at",
    ],
    "shop/orders": ["order_id", "customer_id", "status", "ordered_at", "updated_at"],
    "shop/order_items": ["order_item_id", "order_id", "product_id", "quantity", "unit_price"],
    "payments/payments": [
        "payment_id", "order_id", "payment_method", "status", "amount", "created_at",
    ],
    "payments/refunds": ["refund_id", "payment_id", "order_id", "amount", "reason", "created_at"],
    "web/sessions": [
        "session_id", "customer_id", "started_at", "ended_at", "device", "channel",
        "landing_page", "page_views",
    ],
}  # fmt: skip
READERS = {"csv": "read_csv", "json": "read_json", "parquet": "read_parquet"}
NAMES = {
    "shop/customers": "customers",
    "shop/products": "products",
    "shop/orders": "orders",
    "shop/order_items": "items",
    "payments/payments": "payments",
    "payments/refunds": "refunds",
    "web/sessions": "sessions",
}
CSV_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
JSON_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
MONEY = re.compile(r"^\d+\.\d{2}$")


def _digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _files(root: Path, key: str) -> list[Path]:
    return sorted((root / key).iterdir())


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    root = tmp_path_factory.mktemp("landing")
    return root, generate(root, order_items=ORDER_ITEMS, days=DAYS, start=START, seed=42)


@pytest.fixture(scope="module")
def landing(generated: tuple[Path, GenerationSummary]) -> Path:
    return generated[0]


def _connect(landing: Path) -> duckdb.DuckDBPyConnection:
    """One table per landed table, loaded from all its daily files, with each row's file date."""
    connection = duckdb.connect()
    connection.execute("set TimeZone = 'UTC'")  # JSON timestamps end in Z: TIMESTAMPTZ
    for spec in TABLES:
        pattern = str(landing / spec.key / f"*.{spec.extension}")
        connection.execute(
            f"create table {NAMES[spec.key]} as "
            f"select * exclude (filename), "
            rf"regexp_extract(filename, '_(\d{{4}}-\d{{2}}-\d{{2}})\.', 1)::date as file_date "
            f"from {READERS[spec.extension]}('{pattern}', filename = true)"
        )
    return connection


@pytest.fixture(scope="module")
def con(landing: Path) -> duckdb.DuckDBPyConnection:
    connection = _connect(landing)
    yield connection
    connection.close()


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    return con.execute(sql).fetchone()[0]


# --- Layout and summary --------------------------------------------------------------------
def test_writes_one_file_per_day_named_by_table_and_date(
    generated: tuple[Path, GenerationSummary],
) -> None:
    root, summary = generated
    window = [START + timedelta(days=day) for day in range(DAYS)]
    for spec in TABLES:
        names = [path.name for path in _files(root, spec.key)]
        allowed = {f"{spec.table}_{day.isoformat()}.{spec.extension}" for day in window}
        assert names, spec.key
        assert set(names) <= allowed, spec.key
        assert summary.files[spec.key] == len(names)
    # Tables with activity every day have a file for every day of the window.
    for key in ("shop/customers", "shop/orders", "shop/order_items", "web/sessions"):
        assert summary.files[key] == DAYS, key
    # Only the table folders exist: no staging folder or stray file is left behind.
    assert {str(p.relative_to(root)) for p in root.glob("*/*")} == {s.key for s in TABLES}


def test_summary_counts_the_rows_in_the_files(
    generated: tuple[Path, GenerationSummary], con: duckdb.DuckDBPyConnection
) -> None:
    _, summary = generated
    assert set(summary.rows) == set(summary.files) == {spec.key for spec in TABLES}
    for key, view in NAMES.items():
        assert summary.rows[key] == _scalar(con, f"select count(*) from {view}"), key


def test_volumes_follow_the_requested_scale(con: duckdb.DuckDBPyConnection) -> None:
    items = _scalar(con, "select count(*) from items")
    orders = _scalar(con, "select count(distinct order_id) from orders")
    assert abs(items - ORDER_ITEMS) <= ORDER_ITEMS * 0.10
    assert abs(orders - ORDER_ITEMS / 2.5) <= ORDER_ITEMS / 2.5 * 0.10
    assert _scalar(con, "select count(*) from products where file_date = '2025-01-01'") == 105
    sessions = _scalar(con, "select count(*) from sessions")
    assert sessions == 4 * orders  # one converting and three browsing sessions per order
    placed = (
        "select count(*) from orders where status = 'placed' group by file_date order by file_date"
    )
    per_day = [count for (count,) in con.execute(placed).fetchall()]
    # 2025-01-01 is a Wednesday: the weekend (days 3 and 4) is busier, and the trend is upward.
    assert min(per_day[3:5]) > max(per_day[:3] + per_day[5:7])
    assert per_day[7] > per_day[0]


# --- Formats -------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [spec.key for spec in TABLES if spec.extension == "csv"])
def test_csv_files_have_the_contracted_header_and_value_formats(landing: Path, key: str) -> None:
    for path in _files(landing, key):
        raw = path.read_bytes()
        assert b"\r" not in raw
        raw.decode("utf-8")
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            assert next(reader) == COLUMNS[key]
            rows = list(reader)
        assert rows, path
        for row in rows:
            record = dict(zip(COLUMNS[key], row, strict=True))
            for column, value in record.items():
                if column.endswith("_at"):
                    assert CSV_TIMESTAMP.match(value), (path, column, value)
                if column == "unit_price":
                    assert MONEY.match(value), (path, value)
                    assert 2.0 <= float(value) <= 500.0
            if "is_active" in record:
                assert record["is_active"] in ("true", "false")


@pytest.mark.parametrize("key", [spec.key for spec in TABLES if spec.extension == "csv"])
def test_csv_quotes_only_when_needed(landing: Path, key: str) -> None:
    quoted = 0
    for path in _files(landing, key):
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = next(csv.reader([line]))
            buffer = io.StringIO()
            csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="").writerow(fields)
            assert buffer.getvalue() == line  # quoted exactly when a field needs it
            quoted += '"' in line
    if key == "shop/products":
        assert quoted > 0  # some product names hold a comma or a double quote


@pytest.mark.parametrize("key", ["payments/payments", "payments/refunds"])
def test_json_files_hold_one_object_per_line(landing: Path, key: str) -> None:
    for path in _files(landing, key):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines, path
        for line in lines:
            record = json.loads(line)
            assert list(record) == COLUMNS[key]
            assert isinstance(record["amount"], int) and record["amount"] > 0
            assert JSON_TIMESTAMP.match(record["created_at"]), record


def test_parquet_sessions_have_the_contracted_types(con: duckdb.DuckDBPyConnection) -> None:
    types = dict(con.execute("select column_name, column_type from (describe sessions)").fetchall())
    assert types == {
        "session_id": "VARCHAR",
        "customer_id": "BIGINT",
        "started_at": "TIMESTAMP",
        "ended_at": "TIMESTAMP",
        "device": "VARCHAR",
        "channel": "VARCHAR",
        "landing_page": "VARCHAR",
        "page_views": "INTEGER",
        "file_date": "DATE",
    }
    assert _scalar(con, r"select bool_and(regexp_full_match(session_id, 's\d{12}')) from sessions")
    assert _scalar(con, "select bool_and(ended_at > started_at and page_views >= 1) from sessions")
    assert _scalar(con, "select count(*) from sessions where started_at::date != file_date") == 0


def test_values_come_from_the_contracted_domains(con: duckdb.DuckDBPyConnection) -> None:
    def values(sql: str) -> set[object]:
        return {value for (value,) in con.execute(sql).fetchall()}

    countries = values("select distinct country_code from customers")
    assert {"US", "GB", "DE", "FR", "NL", "ES", "IT", "SE", "PL", "CA", "AU", "JP"} <= countries
    statuses = {"placed", "shipped", "completed", "cancelled", "returned"}
    assert values("select distinct status from orders") == statuses
    methods = {"card", "paypal", "bank_transfer", "gift_card"}
    assert values("select distinct payment_method from payments") == methods
    assert values("select distinct status from payments") == {"succeeded", "failed"}
    reasons = {"returned", "cancelled", "damaged", "goodwill"}
    assert values("select distinct reason from refunds") <= reasons
    assert values("select distinct device from sessions") == {"desktop", "mobile", "tablet"}
    assert len(values("select distinct channel from sessions")) == 6
    assert len(values("select distinct category from products")) == 8
    assert values("select distinct quantity from items") == {1, 2, 3, 4, 5}
    pages = r"^/$|^/sale$|^/products/\d+$|^/category/[a-z]+$"
    assert _scalar(con, f"select bool_and(regexp_matches(landing_page, '{pages}')) from sessions")
    card_share = _scalar(con, "select avg((payment_method = 'card')::int) from payments")
    assert 0.5 < card_share < 0.7


# --- Integrity -----------------------------------------------------------------------------
INTEGRITY = {
    "primary keys are unique within a file": """
        select count(*) from (
            select file_date, customer_id from customers group by all having count(*) > 1
            union all select file_date, product_id from products group by all having count(*) > 1
            union all select file_date, order_id from orders group by all having count(*) > 1
            union all select file_date, order_item_id from items group by all having count(*) > 1
            union all select file_date, payment_id from payments group by all having count(*) > 1
            union all select file_date, refund_id from refunds group by all having count(*) > 1
            union all select file_date, session_id from sessions group by all having count(*) > 1
        )""",
    "append-only tables never repeat a key": """
        select count(*) from (
            select order_item_id from items group by 1 having count(*) > 1
            union all select payment_id from payments group by 1 having count(*) > 1
            union all select refund_id from refunds group by 1 having count(*) > 1
            union all select session_id from sessions group by 1 having count(*) > 1
        )""",
    "every order's customer was delivered in the same or an earlier file, signed up before": """
        select count(*)
        from (select order_id, customer_id, min(ordered_at) as ordered_at, min(file_date) as d
              from orders group by 1, 2) as o
        left join (select customer_id, min(signed_up_at) as signed_up_at, min(file_date) as d
                   from customers group by 1) as c on o.customer_id = c.customer_id
        where c.customer_id is null or c.d > o.d or c.signed_up_at > o.ordered_at""",
    "every order is first delivered as placed on the day it was placed": """
        select count(*) from (
            select * from orders
            qualify row_number() over (partition by order_id order by updated_at) = 1
        ) where status != 'placed' or updated_at != ordered_at or file_date != ordered_at::date
        """,
    "every order keeps one customer and one ordered_at": """
        select count(*) from (
            select order_id from orders group by 1
            having count(distinct customer_id) > 1 or count(distinct ordered_at) > 1
        )""",
    "every item's order and product exist": """
        select count(*) from items
        where order_id not in (select order_id from orders)
            or product_id not in (select product_id from products)""",
    "the products of an order are distinct": """
        select count(*) from (select order_id, product_id from items group by all
                              having count(*) > 1)""",
    "every item is priced at its product's price when ordered, product active": """
        select count(*)
        from items
        inner join (select distinct order_id, ordered_at from orders) as o using (order_id)
        asof inner join products as p
            on items.product_id = p.product_id and o.ordered_at >= p.updated_at
        where p.unit_price != items.unit_price or not p.is_active""",
    "every item is delivered on its order's day or the next": """
        select count(*) from items
        inner join (select order_id, min(ordered_at)::date as day from orders group by 1) as o
            using (order_id)
        where items.file_date not in (o.day, o.day + 1)""",
    "every payment's order exists": """
        select count(*) from payments where order_id not in (select order_id from orders)""",
    "succeeded payments equal the order total in cents, once per order": """
        select count(*)
        from (select order_id, count(*) as n, any_value(amount) as amount from payments
              where status = 'succeeded' group by 1) as p
        inner join (select order_id, sum(quantity * round(unit_price * 100))::bigint as total
                    from items group by 1) as i using (order_id)
        where p.amount != i.total or p.n != 1""",
    "failed attempts come before the succeeded payment": """
        select count(*) from payments as f inner join payments as s using (order_id)
        where f.status = 'failed' and s.status = 'succeeded' and f.created_at >= s.created_at""",
    "every refund's payment is a succeeded payment of the same order": """
        select count(*) from refunds
        left join payments
            on refunds.payment_id = payments.payment_id
            and refunds.order_id = payments.order_id
            and payments.status = 'succeeded'
        where payments.payment_id is null
            or refunds.created_at <= payments.created_at
            or refunds.file_date < payments.file_date""",
    "refunds never exceed the payment": """
        select count(*)
        from (select payment_id, sum(amount) as refunded from refunds group by 1) as r
        inner join payments using (payment_id)
        where r.refunded > payments.amount""",
    "every order has a converting session of its customer 5-60 minutes before": """
        select count(*)
        from (select distinct order_id, customer_id, ordered_at from orders) as o
        where not exists (
            select 1 from sessions as s
            where s.customer_id = o.customer_id
                and s.started_at between o.ordered_at - interval 60 minute
                    and o.ordered_at - interval 5 minute
                and s.ended_at > o.ordered_at
        )""",
    "sessions of 5 minutes or more are converting sessions": """
        select count(*) from sessions
        where customer_id is not null and ended_at - started_at >= interval 5 minute
            and session_id not in (
                select s.session_id
                from (select distinct customer_id, ordered_at from orders) as o
                inner join sessions as s
                    on s.customer_id = o.customer_id
                    and s.started_at between o.ordered_at - interval 60 minute
                        and o.ordered_at - interval 5 minute
                    and s.ended_at > o.ordered_at
            )""",
    "cancelled orders are unpaid or refunded in full": """
        select count(*)
        from (select distinct order_id from orders where status = 'cancelled') as c
        inner join payments as p on c.order_id = p.order_id and p.status = 'succeeded'
        left join refunds as r on p.payment_id = r.payment_id and r.reason = 'cancelled'
        where r.amount is distinct from p.amount""",
    "returned orders are refunded in full when returned": """
        select count(*)
        from (select order_id, updated_at from orders where status = 'returned') as o
        inner join payments as p on o.order_id = p.order_id and p.status = 'succeeded'
        left join refunds as r on p.payment_id = r.payment_id and r.reason = 'returned'
        where r.amount is distinct from p.amount or r.created_at < o.updated_at""",
}


@pytest.mark.parametrize("rule", list(INTEGRITY))
def test_integrity(con: duckdb.DuckDBPyConnection, rule: str) -> None:
    assert _scalar(con, INTEGRITY[rule]) == 0, rule


BREAKAGES = {
    "primary keys are unique within a file": "insert into orders select * from orders limit 1",
    "every order's customer was delivered in the same or an earlier file, signed up before": (
        "delete from customers where customer_id = (select min(customer_id) from orders)"
    ),
    "every item is priced at its product's price when ordered, product active": (
        "update items set unit_price = unit_price + 1 where order_item_id = 1"
    ),
    "succeeded payments equal the order total in cents, once per order": (
        "update payments set amount = amount + 1 where status = 'succeeded'"
    ),
    "refunds never exceed the payment": "update refunds set amount = amount * 100",
    "every order has a converting session of its customer 5-60 minutes before": (
        "update sessions set started_at = started_at - interval 2 hour"
    ),
}


@pytest.mark.parametrize("rule", list(BREAKAGES))
def test_integrity_rules_fire_on_broken_data(con: duckdb.DuckDBPyConnection, rule: str) -> None:
    """The integrity queries are not vacuous: each fires once its rule is broken on purpose."""
    con.execute("begin transaction")
    try:
        con.execute(BREAKAGES[rule])
        assert _scalar(con, INTEGRITY[rule]) > 0
    finally:
        con.execute("rollback")
    assert _scalar(con, INTEGRITY[rule]) == 0


def test_changes_are_redelivered_in_later_files(con: duckdb.DuckDBPyConnection) -> None:
    # An order comes again in each later file where its status changed, updated that day.
    redelivered = "select count(distinct order_id) from orders where updated_at != ordered_at"
    assert _scalar(con, redelivered) > 0
    out_of_order = """
        select count(*) from (
            select
                updated_at,
                file_date,
                lag(updated_at) over (partition by order_id order by file_date) as before,
                lag(file_date) over (partition by order_id order by file_date) as day_before
            from orders
        ) where before >= updated_at or day_before = file_date"""
    assert _scalar(con, out_of_order) == 0
    assert _scalar(con, "select count(*) from orders where updated_at::date != file_date") == 0
    # Customers come back with a new email or country, updated on the day of the file.
    customer_changes = """
        select
            count(*),
            count(*) filter (where email = prev_email and country_code = prev_country)
        from (
            select *, lag(email) over w as prev_email, lag(country_code) over w as prev_country
            from customers
            window w as (partition by customer_id order by file_date)
        ) where prev_email is not null and updated_at::date = file_date"""
    changed, unchanged = con.execute(customer_changes).fetchone()
    assert changed > 0 and unchanged == 0
    # Products come back every later day with a new price or a new is_active.
    assert _scalar(con, "select count(distinct file_date) from products") == DAYS
    assert _scalar(con, "select count(*) from products where not is_active") > 0


def test_late_arrivals_land_in_the_next_days_file(con: duckdb.DuckDBPyConnection) -> None:
    late_items = """
        select count(*) from items
        inner join (select order_id, min(ordered_at)::date as day from orders group by 1)
            using (order_id)
        where items.file_date = day + 1"""
    items = _scalar(con, "select count(*) from items")
    assert 0.005 * items < _scalar(con, late_items) < 0.04 * items
    # Payments from 23:00 land in the next day's file; all others on the day they were made.
    created = "(created_at at time zone 'UTC')"
    misplaced = f"""
        select count(*) from payments
        where file_date != {created}::date + (hour({created}) >= 23)::integer"""
    assert _scalar(con, misplaced) == 0
    assert _scalar(con, f"select count(*) from payments where hour({created}) >= 23") > 0


def test_payment_outcomes_cover_the_contracted_cases(con: duckdb.DuckDBPyConnection) -> None:
    orders = _scalar(con, "select count(distinct order_id) from orders")
    failed = _scalar(con, "select count(*) from payments where status = 'failed'")
    assert 0.02 * orders < failed < 0.08 * orders
    unpaid = """
        select count(distinct order_id) from orders
        where order_id not in (select order_id from payments where status = 'succeeded')
            and order_id not in (select order_id from orders where status = 'cancelled')"""
    assert _scalar(con, unpaid) > 0  # bank transfers never paid, or paid after the window
    reasons = dict(con.execute("select reason, count(*) from refunds group by 1").fetchall())
    assert reasons.get("cancelled", 0) > 0
    assert reasons.get("damaged", 0) + reasons.get("goodwill", 0) + reasons.get("returned", 0) > 0


# --- Reproducibility -----------------------------------------------------------------------
def test_same_arguments_give_the_same_bytes_whatever_the_threads(
    landing: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    generate(again, order_items=ORDER_ITEMS, days=DAYS, start=START, seed=42, threads=1)
    assert _digests(again) == _digests(landing)


def test_another_seed_gives_other_content(landing: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    generate(other, order_items=ORDER_ITEMS, days=DAYS, start=START, seed=43)
    first, second = _digests(landing), _digests(other)
    changed = [name for name in first.keys() & second.keys() if first[name] != second[name]]
    assert len(changed) >= len(first) * 0.9


# --- Safety and arguments ------------------------------------------------------------------
def test_refuses_a_landing_folder_that_holds_these_tables(tmp_path: Path) -> None:
    stale = tmp_path / "shop" / "orders" / "orders_2024-12-31.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("order_id\n1\n")
    with pytest.raises(ValueError, match=r"already holds sample data.*overwrite=True"):
        generate(tmp_path, order_items=500, days=2)
    assert stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop"]


def test_overwrite_replaces_only_the_table_folders(tmp_path: Path) -> None:
    stale = tmp_path / "shop" / "orders" / "orders_2024-12-31.csv"
    unrelated = [tmp_path / "shop" / "notes.txt", tmp_path / "crm" / "accounts" / "a.csv"]
    for path in [stale, *unrelated]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("keep\n")
    summary = generate(tmp_path, order_items=500, days=2, overwrite=True)
    assert not stale.exists()
    assert all(path.read_text() == "keep\n" for path in unrelated)
    assert len(list((tmp_path / "shop" / "orders").iterdir())) == summary.files["shop/orders"]


def test_empty_table_folders_are_not_refused(tmp_path: Path) -> None:
    (tmp_path / "shop" / "orders").mkdir(parents=True)
    assert generate(tmp_path, order_items=500, days=2).files["shop/orders"] == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"order_items": 0}, "order_items must be a positive integer"),
        ({"order_items": 10.5}, "order_items must be a positive integer"),
        ({"days": 0}, "days must be an integer between 1 and 3660"),
        ({"start": "2025-01-01"}, "start must be a datetime.date"),
        ({"seed": 2**64}, "seed must be an integer that fits in 64 bits"),
        ({"threads": 0}, "threads must be None or a positive integer"),
    ],
)
def test_rejects_bad_arguments(tmp_path: Path, arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(tmp_path, **arguments)
    assert not any(tmp_path.iterdir())


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--landing-dir", str(tmp_path), "--order-items", "500", "--days", "3"]
    argv += ["--start", "2025-03-01", "--seed", "7"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "shop/order_items" in out and "web/sessions" in out
    assert (tmp_path / "shop" / "orders" / "orders_2025-03-03.csv").exists()
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_dataops_generate_starts_on_the_given_date(tmp_path: Path) -> None:
    """`dataops generate|run --start` (make elementary starts the sample 30 days ago)."""
    dataops(tmp_path, "generate", "--order-items", "300", "--days", "2", "--start", "2026-11-30")
    orders = sorted(p.name for p in (tmp_path / "landing" / "shop" / "orders").iterdir())
    assert orders == ["orders_2026-11-30.csv", "orders_2026-12-01.csv"]


def test_runs_as_a_module(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "dataops.sample_data.generator"]
    command += ["--landing-dir", str(tmp_path), "--order-items", "300", "--days", "2"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "payments/payments" in result.stdout
