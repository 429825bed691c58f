"""Deterministic sample data for an online shop, generated inside DuckDB and landed as daily files.

Every value is drawn from ``hash(key, seed, salt)`` and every file is written with
``COPY (select ... order by <primary key>) TO ...``, so the same arguments give byte-identical
files whatever the number of threads. Nothing is generated row by row in Python.

Layout: ``<landing_dir>/<source>/<table>/<table>_<YYYY-MM-DD>.<ext>``, one file per day of the
window that has rows (day 0 is ``start``). :data:`TABLES` lists the sources, tables, formats and
primary keys; ``python -m dataops.sample_data.generator --help`` shows the command line.

Speed: the SQL avoids global sorts. Ids are computed instead of numbered: customers and orders
get their timestamps in id order (stratified sampling), and running totals (items and payments
before an order) come from per-block sums packed into bit fields. The only sorts are the
per-file ``order by`` and small tables. 10 million order items (about 42 million rows, 2 GB of
files) cost about 55 CPU-seconds and under 2 GB of memory; writing the files is most of it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from dataops.core.sql import quote_literal

__all__ = ["TABLES", "GenerationSummary", "LandingTable", "generate", "main"]


@dataclass(frozen=True)
class LandingTable:
    """One landed table: where its files go, their format and the key unique within a file."""

    source: str
    table: str
    extension: str
    primary_key: str

    @property
    def key(self) -> str:
        return f"{self.source}/{self.table}"


TABLES: tuple[LandingTable, ...] = (
    LandingTable("shop", "customers", "csv", "customer_id"),
    LandingTable("shop", "products", "csv", "product_id"),
    LandingTable("shop", "orders", "csv", "order_id"),
    LandingTable("shop", "order_items", "csv", "order_item_id"),
    LandingTable("payments", "payments", "json", "payment_id"),
    LandingTable("payments", "refunds", "json", "refund_id"),
    LandingTable("web", "sessions", "parquet", "session_id"),
)

COPY_OPTIONS = {
    "csv": "format csv, header true, delimiter ',', quote '\"', escape '\"'",
    "json": "format json",  # newline-delimited: one object per line
    "parquet": "format parquet",
}


@dataclass(frozen=True)
class GenerationSummary:
    """What one run wrote, keyed by ``"<source>/<table>"``: files and rows per table."""

    files: dict[str, int]
    rows: dict[str, int]

    def format(self) -> str:
        width = max(len(key) for key in self.files)
        return "\n".join(
            f"{key:<{width}}  {self.files[key]:>4} files  {self.rows[key]:>12,} rows"
            for key in self.files
        )


# --- Shape of the data ---------------------------------------------------------------------
# Weighted choices are (value, weight) pairs; weights need not sum to 100.
COUNTRIES = (
    ("US", 30), ("GB", 12), ("DE", 11), ("FR", 9), ("CA", 7), ("NL", 6),
    ("ES", 6), ("IT", 6), ("AU", 4), ("SE", 4), ("PL", 3), ("JP", 2),
)  # fmt: skip
FIRST_NAMES = (
    "Emma", "Liam", "Olivia", "Noah", "Ava", "Lucas", "Mia", "Leon", "Sofia", "Hugo", "Zoë",
    "Jan", "Chloé", "Mateo", "Yuki", "Astrid", "Łukasz", "Amelia", "Oliver", "Isabella", "Finn",
    "Elena", "Sven", "Aiko",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Brown", "Müller", "Schmidt", "Martin", "Bernard", "García", "Rossi",
    "de Vries", "Andersson", "Kowalski", "Tanaka", "Wilson", "O'Brien", "Taylor", "Dubois",
    "López", "Jansen", "Nowak", "Sato", "Thompson", "Fischer", "Moreau",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example", "inbox.example")
# category, weight, median unit price, product nouns. Two names need CSV quoting on purpose.
CATEGORIES = (
    ("apparel", 18, 30.0, ("T-Shirt", "Hoodie", "Jeans", "Sneakers", "Socks, 3-pack")),
    ("books", 14, 15.0, ("Novel", "Cookbook", "Travel Guide", "Graphic Novel", "Field Guide")),
    ("electronics", 12, 90.0, ("Headphones", "Speaker", "USB-C Charger", "Smart Watch")),
    ("home", 16, 35.0, ("Desk Lamp", "Throw Blanket", "Coffee Mug", 'Poster 24" x 36"')),
    ("toys", 9, 20.0, ("Puzzle", "Building Blocks", "Plush Bear", "Board Game", "Kite")),
    ("beauty", 10, 18.0, ("Face Cream", "Lip Balm", "Shampoo", "Perfume", "Nail Polish")),
    ("sports", 11, 40.0, ("Yoga Mat", "Water Bottle", "Running Shorts", "Dumbbell Set")),
    ("grocery", 10, 8.0, ("Olive Oil", "Dark Chocolate", "Coffee Beans", "Green Tea")),
)
ADJECTIVES = (
    "Classic", "Everyday", "Premium", "Organic", "Compact", "Deluxe", "Vintage", "Eco", "Ultra",
    "Cozy", "Essential", "Pro",
)  # fmt: skip
PRICE_ENDINGS = (99, 99, 95, 50, 49, 0)  # cents
ITEMS_PER_ORDER = ((1, 32), (2, 26), (3, 19), (4, 11), (5, 7), (6, 5))  # mean 2.50
QUANTITIES = ((1, 70), (2, 17), (3, 7), (4, 4), (5, 2))
PAYMENT_METHODS = (("card", 60), ("paypal", 22), ("bank_transfer", 12), ("gift_card", 6))
DEVICES = (("desktop", 45), ("mobile", 45), ("tablet", 10))
CHANNELS = (
    ("organic", 30), ("paid_search", 20), ("direct", 18), ("social", 13), ("email", 12),
    ("referral", 7),
)  # fmt: skip
# Share of orders and sessions per hour of the day (UTC); evenings are busiest.
HOUR_WEIGHTS = (2, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 6, 7, 6, 6, 6, 6, 7, 8, 9, 9, 8, 6, 4)

ITEMS_PER_ORDER_MEAN = 2.5
BROWSING_SESSIONS_PER_ORDER = 3  # non-converting sessions, on the order's day
ORDERS_PER_SIGNUP = 8  # daily signups = orders of the day / 8
BASE_CUSTOMERS_PER_ORDER = 0.25  # customers who signed up in the year before the window
WEEKEND_UPLIFT_PCT = 30
TREND_PCT = 15  # growth of daily orders from the first to the last day
CANCEL_RATE = 0.04
CANCELLED_PAID_RATE = 0.5
FAILED_ATTEMPT_RATE = 0.05
BANK_TRANSFER_OUTSTANDING_RATE = 0.03
RETURN_RATE = 0.03
PARTIAL_REFUND_RATE = 0.01
LATE_ITEM_RATE = 0.02
CUSTOMER_UPDATE_RATE = 0.005
ANONYMOUS_SESSION_RATE = 0.4
BASE_INACTIVE_TAIL_RATE = 0.06  # of the less popular half of the catalogue
STATUS_CHANGE_TAIL_RATE = 0.3  # of product changes that hit the less popular half
PRODUCTS_BASE, PRODUCTS_PER_ORDER_ITEMS, PRODUCTS_MAX = 100, 1000, 5000
PRODUCT_CLASSES = 6  # = the most items per order: each line of an order uses its own class
LATE_PAYMENT_FROM_SECOND = 23 * 3600  # payments from 23:00 land in the next day's file

DAY = 86_400
YEAR = 365 * DAY
FAR = 10**12  # seconds; open end of a product version
BLOCK = 21  # orders per block of packed 3-bit counts (63 bits)


@dataclass(frozen=True)
class _Plan:
    """Validated arguments and the sizes derived from them."""

    order_items: int
    days: int
    start: date
    seed: int
    orders: int
    products: int
    base_customers: int

    @property
    def popular_products(self) -> int:
        """Products 1..N are never inactive; deactivations only hit the long tail."""
        return self.products // 2

    @property
    def start_epoch(self) -> int:
        return (self.start - date(1970, 1, 1)).days * DAY

    @property
    def end_sec(self) -> int:
        return self.days * DAY


def _plan(order_items: int, days: int, start: date, seed: int, threads: int | None) -> _Plan:
    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not is_int(order_items) or order_items < 1:
        raise ValueError(f"order_items must be a positive integer, got {order_items!r}.")
    if not is_int(days) or not 1 <= days <= 3660:
        raise ValueError(f"days must be an integer between 1 and 3660, got {days!r}.")
    if not isinstance(start, date) or hasattr(start, "hour"):
        raise ValueError(f"start must be a datetime.date (not a datetime), got {start!r}.")
    if not is_int(seed) or not -(2**63) <= seed < 2**63:
        raise ValueError(f"seed must be an integer that fits in 64 bits, got {seed!r}.")
    if threads is not None and (not is_int(threads) or threads < 1):
        raise ValueError(f"threads must be None or a positive integer, got {threads!r}.")
    orders = max(1, round(order_items / ITEMS_PER_ORDER_MEAN))
    products = min(PRODUCTS_MAX, PRODUCTS_BASE + order_items // PRODUCTS_PER_ORDER_ITEMS)
    base_customers = max(100, round(orders * BASE_CUSTOMERS_PER_ORDER))
    return _Plan(order_items, days, start, seed, orders, products, base_customers)


# --- SQL helpers ---------------------------------------------------------------------------
def _lit(value: object) -> str:
    """A SQL literal for a constant of this module (strings quoted, numbers as written)."""
    if isinstance(value, str):
        return quote_literal(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"no SQL literal for {value!r}")
    return repr(value)


def _list(values: Sequence[object]) -> str:
    return "[" + ", ".join(_lit(value) for value in values) + "]"


def _pick(uniform: str, choices: Sequence[tuple[object, int]]) -> str:
    """CASE expression choosing a value by weight from a [0, 1) column."""
    total = sum(weight for _, weight in choices)
    cumulative, branches = 0, []
    for value, weight in choices[:-1]:
        cumulative += weight
        branches.append(f"when {uniform} < {cumulative / total!r} then {_lit(value)}")
    return f"(case {' '.join(branches)} else {_lit(choices[-1][0])} end)"


def _indexes(choices: Sequence[tuple[object, ...]]) -> list[tuple[int, int]]:
    """(0-based index, weight) pairs, to pick a position in a list by weight."""
    return [(index, choice[1]) for index, choice in enumerate(choices)]


def _hour_bounds() -> list[float]:
    total = sum(HOUR_WEIGHTS)
    return [sum(HOUR_WEIGHTS[:hour]) / total for hour in range(len(HOUR_WEIGHTS))] + [1.0]


def _second_of_day(quantile: str) -> str:
    """Second of the day at a [0, 1) quantile of the hourly profile; monotone in the quantile."""
    bounds = _hour_bounds()
    branches = []
    for hour in range(24):
        low, high = bounds[hour], bounds[hour + 1]
        second = (
            f"{hour * 3600} + least(3599, floor(({quantile} - {low!r}) * {3600 / (high - low)!r})"
            "::bigint)"
        )
        branches.append(second if hour == 23 else f"when {quantile} < {high!r} then {second}")
    return f"(case {' '.join(branches[:-1])} else {branches[-1]} end)"


def _macros(plan: _Plan) -> list[str]:
    seed, epoch = f"({plan.seed})::bigint", plan.start_epoch
    field_masks = [sum(1 << (3 * slot + bit) for slot in range(BLOCK)) for bit in range(3)]
    # DuckDB combines the hashes of several arguments cheaply, so draws with different salts
    # would be correlated: hash the combined hash once more. h1/h2 give 64 random bits, cut
    # into 16- or 32-bit uniforms by f16/f32; u/u2 keep 53 bits (a double that never rounds
    # up to 1.0) for the smaller tables.
    return [
        f"create macro h1(k, salt) as hash(hash(k, {seed}, salt))",
        f"create macro h2(k1, k2, salt) as hash(hash(k1, k2, {seed}, salt))",
        "create macro f16(h, i) as ((h >> (16 * i)) & 65535) / 65536.0",
        "create macro f32(h, i) as ((h >> (32 * i)) & 4294967295) / 4294967296.0",
        "create macro u(k, salt) as (h1(k, salt) >> 11) / 9007199254740992.0",
        "create macro u2(k1, k2, salt) as (h2(k1, k2, salt) >> 11) / 9007199254740992.0",
        f"create macro ts(sec) as make_timestamp(({epoch} + sec) * 1000000)",
        "create macro iso_ts(sec) as strftime(ts(sec), '%Y-%m-%dT%H:%M:%SZ')",
        "create macro money(cents) as (cents / 100)::decimal(10, 2)",
        # sum of the 3-bit fields of x
        "create macro field_sum(x) as "
        f"bit_count(x & {field_masks[0]}) + 2 * bit_count(x & {field_masks[1]})"
        f" + 4 * bit_count(x & {field_masks[2]})",
        # sum of the fields of the orders before `order_id` in its block
        "create macro earlier_in_block(packed, order_id) as "
        f"field_sum(packed & ((1::bigint << (3 * ((order_id - 1) % {BLOCK}))) - 1))",
    ]


# --- The model, one statement per table ----------------------------------------------------
def _sql_days(plan: _Plan) -> str:
    span = max(plan.days - 1, 1)
    changes = max(1, plan.products // 200)
    return f"""
create table days as
with weighted as (
    select
        d,
        (case when isodow(date '{plan.start.isoformat()}' + d::integer) in (6, 7)
            then {100 + WEEKEND_UPLIFT_PCT} else 100 end)
        * (1000 + ({TREND_PCT * 10} * d) // {span}) as weight
    from range({plan.days}) as r(d)
),
cumulated as (
    select
        d,
        weight,
        sum(weight) over (order by d rows between unbounded preceding and current row)
            as cum_weight,
        sum(weight) over () as total_weight
    from weighted
),
counted as (
    select
        d,
        ({plan.orders} * cum_weight // total_weight
            - {plan.orders} * (cum_weight - weight) // total_weight)::bigint as n_orders
    from cumulated
),
signups as (
    select d, n_orders, greatest(1, n_orders // {ORDERS_PER_SIGNUP}) as n_signups
    from counted
)
select
    d,
    n_orders,
    n_signups,
    coalesce(sum(n_orders) over earlier_days, 0)::bigint as orders_before,
    {plan.base_customers} + coalesce(sum(n_signups) over earlier_days, 0)::bigint
        as customers_before,
    case when d = 0 then 0 else round(customers_before * {CUSTOMER_UPDATE_RATE})::bigint end
        as n_customer_updates,
    case when d = 0 then 0 else {changes} end as n_product_changes
from signups
window earlier_days as (order by d rows between unbounded preceding and 1 preceding)
"""


def _sql_customers(plan: _Plan) -> list[str]:
    n_first, n_last, n_domains = len(FIRST_NAMES), len(LAST_NAMES), len(EMAIL_DOMAINS)
    n_countries = len(COUNTRIES)
    local_part = "regexp_replace(replace(lower(strip_accents({})), 'ł', 'l'), '[^a-z]', '', 'g')"
    # Signup times are stratified ((i + jitter) / n of the period), so ids follow signup time
    # without a sort: customers 1..customers_before of a day signed up before that day.
    customers = f"""
create table customers as
with signups as (
    select
        i + 1 as customer_id,
        -{YEAR} + floor((i + u(i, 'customer_signup')) * {YEAR} / {plan.base_customers})::bigint
            as signed_up_sec
    from range({plan.base_customers}) as r(i)
    union all
    select
        customers_before + j + 1,
        d * {DAY} + floor((j + u2(d, j, 'customer_signup')) * {DAY} / n_signups)::bigint
    from (select d, customers_before, n_signups, unnest(range(n_signups)) as j from days)
),
drawn as (
    select customer_id, signed_up_sec, h1(customer_id, 'customer') as h from signups
),
described as (
    select
        customer_id,
        signed_up_sec,
        {_list(FIRST_NAMES)}[1 + floor(f16(h, 0) * {n_first})::bigint] as first_name,
        {_list(LAST_NAMES)}[1 + floor(f16(h, 1) * {n_last})::bigint] as last_name,
        {_list(EMAIL_DOMAINS)}[1 + floor(f16(h, 2) * {n_domains})::bigint] as email_domain,
        f16(h, 3) as u_country
    from drawn
)
select
    customer_id,
    signed_up_sec,
    first_name,
    last_name,
    {local_part.format("first_name")} as email_first,
    {local_part.format("last_name")} as email_last,
    email_domain,
    {_pick("u_country", _indexes(COUNTRIES))} as country_index
from described
"""
    # ~0.5% of the customers known before a day are re-delivered that day with a new email or
    # country. Changes accumulate: a second change starts from the first one.
    updates = f"""
create table customer_updates as
with picked as (
    select
        d,
        j,
        1 + floor(u2(d, j, 'customer_update') * customers_before)::bigint as customer_id
    from (select d, customers_before, unnest(range(n_customer_updates)) as j from days)
),
deduplicated as (
    select customer_id, d from picked
    qualify row_number() over (partition by customer_id, d order by j) = 1
),
events as (
    select
        customer_id,
        d,
        d * {DAY} + floor(u2(customer_id, d, 'customer_update_second') * {DAY})::bigint
            as updated_sec,
        u2(customer_id, d, 'customer_update_kind') < 0.5 as is_email_change,
        1 + floor(u2(customer_id, d, 'customer_update_country') * {n_countries - 1})::bigint
            as country_shift
    from deduplicated
)
select
    customer_id,
    d,
    updated_sec,
    max(case when is_email_change then d end) over customer_history as email_changed_on,
    (sum(case when is_email_change then 0 else country_shift end) over customer_history)::bigint
        as country_shift
from events
window customer_history as (
    partition by customer_id order by d rows between unbounded preceding and current row
)
"""
    countries = _list([code for code, _ in COUNTRIES])
    out = f"""
create table out_shop_customers as
with versions as (
    select
        case when signed_up_sec < 0 then 0 else signed_up_sec // {DAY} end as day,
        customer_id,
        null::bigint as email_changed_on,
        0::bigint as country_shift,
        signed_up_sec as updated_sec
    from customers
    union all
    select d, customer_id, email_changed_on, country_shift, updated_sec
    from customer_updates
)
select
    versions.day,
    customers.customer_id,
    customers.first_name,
    customers.last_name,
    case
        when versions.email_changed_on is null
            then customers.email_first || '.' || customers.email_last || customers.customer_id
                || '@' || customers.email_domain
        else customers.email_first || customers.email_last || customers.customer_id
            || '.' || versions.email_changed_on || '@'
            || {_list(EMAIL_DOMAINS)}[
                1 + floor(u2(customers.customer_id, versions.email_changed_on, 'email_domain')
                    * {n_domains})::bigint]
    end as email,
    {countries}[1 + (customers.country_index + versions.country_shift) % {n_countries}]
        as country_code,
    customers.signed_up_sec,
    versions.updated_sec
from versions
inner join customers on versions.customer_id = customers.customer_id
"""
    return [customers, updates, out]


def _sql_products(plan: _Plan) -> list[str]:
    n_adjectives, n_endings = len(ADJECTIVES), len(PRICE_ENDINGS)
    categories = _list([name for name, *_ in CATEGORIES])
    medians = _list([median for _, _, median, _ in CATEGORIES])
    nouns = "[" + ", ".join(_list(names) for *_, names in CATEGORIES) + "]"
    popular = plan.popular_products
    products = f"""
create table products as
with drawn as (
    select
        product_id,
        u(product_id, 'product_category') as u_category,
        -- a sum of four uniforms is close enough to a normal for a log-normal price
        (u(product_id, 'price_1') + u(product_id, 'price_2') + u(product_id, 'price_3')
            + u(product_id, 'price_4') - 2) * sqrt(3) as z
    from range(1, {plan.products + 1}) as r(product_id)
),
categorised as (
    select product_id, z, {_pick("u_category", _indexes(CATEGORIES))} as category_index
    from drawn
),
described as (
    select
        product_id,
        {categories}[1 + category_index] as category,
        {_list(ADJECTIVES)}[1 + floor(u(product_id, 'adjective') * {n_adjectives})::bigint]
            || ' ' || list_extract({nouns}[1 + category_index],
                1 + floor(u(product_id, 'noun') * len({nouns}[1 + category_index]))::bigint)
            as product_name,
        least(499.0, greatest(2.0, exp(ln({medians}[1 + category_index]) + 0.8 * z))) as price
    from categorised
)
select
    product_id,
    product_name,
    category,
    floor(price)::bigint * 100
        + {_list(PRICE_ENDINGS)}[1 + floor(u(product_id, 'price_ending') * {n_endings})::bigint]
        as base_price_cents,
    not (product_id > {popular}
        and u(product_id, 'product_inactive') < {BASE_INACTIVE_TAIL_RATE}) as base_is_active,
    -1 - floor(u(product_id, 'product_created') * {YEAR})::bigint as base_updated_sec
from described
"""
    # A few products change every later day: a new price (70-95% or 105-130% of the base
    # price), or, in the long tail only, a switch of is_active.
    versions = f"""
create table product_versions as
with picked as (
    select
        d,
        j,
        1 + floor(u2(d, j, 'product_change') * {plan.products})::bigint as product_id
    from (select d, unnest(range(n_product_changes)) as j from days)
),
deduplicated as (
    select product_id, d from picked
    qualify row_number() over (partition by product_id, d order by j) = 1
),
changes as (
    select
        deduplicated.product_id,
        deduplicated.d,
        deduplicated.d * {DAY}
            + floor(u2(deduplicated.product_id, deduplicated.d, 'product_change_second')
                * {DAY})::bigint as updated_sec,
        deduplicated.product_id > {popular}
            and u2(deduplicated.product_id, deduplicated.d, 'product_change_kind')
                < {STATUS_CHANGE_TAIL_RATE} as is_status_change,
        70 + floor(u2(deduplicated.product_id, deduplicated.d, 'price_factor') * 52)::bigint
            as factor_draw,
        products.base_price_cents
    from deduplicated
    inner join products on deduplicated.product_id = products.product_id
),
factored as (
    select
        *,
        case when factor_draw > 95 then factor_draw + 9 else factor_draw end as factor_pct
    from changes
),
priced as (
    select
        product_id,
        d,
        updated_sec,
        is_status_change,
        case
            when is_status_change then null
            when base_price_cents * factor_pct // 100 between 200 and 50000
                then base_price_cents * factor_pct // 100
            -- out of range: move the other way
            else base_price_cents * (200 - factor_pct) // 100
        end as new_price_cents
    from factored
),
states as (
    select
        product_id,
        d,
        updated_sec,
        last_value(new_price_cents ignore nulls) over product_history as price_cents,
        sum(is_status_change::integer) over product_history as status_changes
    from priced
    window product_history as (
        partition by product_id order by updated_sec
        rows between unbounded preceding and current row
    )
),
versions as (
    select
        product_id,
        0::bigint as day,
        base_updated_sec as updated_sec,
        -{FAR}::bigint as valid_from,
        base_price_cents as price_cents,
        base_is_active as is_active
    from products
    union all
    select
        states.product_id,
        states.d,
        states.updated_sec,
        states.updated_sec,
        coalesce(states.price_cents, products.base_price_cents),
        products.base_is_active != (states.status_changes % 2 = 1)
    from states
    inner join products on states.product_id = products.product_id
)
select
    *,
    lead(valid_from, 1, {FAR}::bigint) over (partition by product_id order by valid_from)
        as valid_to
from versions
"""
    out = """
create table out_shop_products as
select
    product_versions.day,
    products.product_id,
    products.product_name,
    products.category,
    product_versions.price_cents,
    product_versions.is_active,
    product_versions.updated_sec
from product_versions
inner join products on product_versions.product_id = products.product_id
"""
    return [products, versions, out]


def _sql_orders(plan: _Plan) -> list[str]:
    end = plan.end_sec
    day0_from = _hour_bounds()[1]  # nothing before 01:00 on day 0: sessions start in the window
    # Order j of n on a day is placed at quantile (j + jitter) / n of the hourly profile, so
    # order ids follow time without a sort. Customer: anyone who had signed up by then, i.e.
    # customers_before of the day plus the day's signups up to that second (ids follow time).
    orders = f"""
create table orders as
with slots as (
    select
        d,
        n_orders,
        orders_before,
        customers_before,
        n_signups,
        unnest(range(n_orders)) as j
    from days
),
drawn as (
    select
        *,
        orders_before + j + 1 as order_id,
        h1(orders_before + j + 1, 'order_a') as ha,
        h1(orders_before + j + 1, 'order_b') as hb,
        h1(orders_before + j + 1, 'order_c') as hc,
        h1(orders_before + j + 1, 'order_d') as hd
    from slots
),
quantiled as (
    select
        *,
        case when d = 0 then {day0_from!r} + (j + f16(ha, 0)) / n_orders * {1 - day0_from!r}
            else (j + f16(ha, 0)) / n_orders
        end as quantile
    from drawn
),
timed as (
    select *, {_second_of_day("quantile")} as second_of_day from quantiled
),
fated as (
    select
        order_id,
        d as order_day,
        d * {DAY} + second_of_day as ordered_sec,
        customers_before,
        1 + floor(f32(hd, 0) * (customers_before + n_signups * second_of_day // {DAY}))::bigint
            as customer_id,
        {_pick("f16(ha, 1)", ITEMS_PER_ORDER)} as n_items,
        floor(f16(ha, 2) * {PRODUCT_CLASSES})::bigint as first_class,
        {_pick("f16(ha, 3)", PAYMENT_METHODS)} as payment_method,
        f16(hb, 0) < {CANCEL_RATE} as is_cancelled,
        f16(hb, 1) < {CANCELLED_PAID_RATE} as cancelled_paid_draw,
        f16(hb, 2) < {BANK_TRANSFER_OUTSTANDING_RATE} as outstanding_draw,
        f16(hb, 3) < {FAILED_ATTEMPT_RATE} as failed_draw,
        f16(hc, 0) < {RETURN_RATE} as return_draw,
        f16(hc, 1) < {PARTIAL_REFUND_RATE} as partial_refund_draw,
        hc,
        hd
    from timed
),
paid as (
    select
        *,
        case
            when is_cancelled then cancelled_paid_draw
            else not (payment_method = 'bank_transfer' and outstanding_draw)
        end as has_payment
    from fated
),
attempted as (
    select
        *,
        case when has_payment and failed_draw
            then ordered_sec + 30 + floor(f16(hc, 2) * 270)::bigint
        end as failed_sec
    from paid
),
settled as (
    select
        *,
        case
            when not has_payment then null
            when is_cancelled or payment_method != 'bank_transfer'
                then coalesce(failed_sec, ordered_sec) + 30 + floor(f16(hc, 3) * 870)::bigint
            else coalesce(failed_sec, ordered_sec) + 7200 + floor(f16(hc, 3) * 252000)::bigint
        end as paid_sec
    from attempted
),
shipped as (
    select
        *,
        -- cancelled on the next calendar day, within 24 hours of ordering and at least an
        -- hour after any payment (so its refund never lands before the payment)
        case when is_cancelled then greatest(
            (order_day + 1) * {DAY}
                + floor(f16(hd, 2) * (ordered_sec - order_day * {DAY}))::bigint,
            coalesce(paid_sec + 3600, 0)
        ) end as cancelled_sec,
        case when not is_cancelled and paid_sec is not null
            then paid_sec + {DAY} + floor(f16(hd, 2) * {2 * DAY})::bigint
        end as shipped_sec
    from settled
),
completed as (
    select
        *,
        -- at least a day after shipping, at most 7 days after payment
        shipped_sec + {DAY}
            + floor(f16(hd, 3) * (paid_sec + {6 * DAY} - shipped_sec))::bigint as completed_sec
    from shipped
)
select
    order_id,
    customer_id,
    ordered_sec,
    order_day,
    customers_before,
    n_items,
    first_class,
    payment_method,
    is_cancelled,
    failed_sec,
    paid_sec,
    cancelled_sec,
    shipped_sec,
    completed_sec,
    case when return_draw
        then completed_sec + {DAY} + floor(u(order_id, 'return_delay') * {12 * DAY})::bigint
    end as returned_sec,
    case when partial_refund_draw and not return_draw
        then completed_sec + {DAY} + floor(u(order_id, 'partial_refund_delay') * {4 * DAY})::bigint
    end as partial_refund_sec,
    coalesce(failed_sec < {end}, false)::integer + coalesce(paid_sec < {end}, false)::integer
        as n_payments
from completed
"""
    # Running totals without a sort: per block of 21 orders, the item and payment counts of
    # each order are packed into 3-bit fields; only the ~orders/21 block sums are sorted.
    blocks = f"""
create table order_blocks as
with counted as (
    select
        (order_id - 1) // {BLOCK} as block,
        n_items,
        n_payments,
        3 * ((order_id - 1) % {BLOCK}) as shift
    from orders
),
summed as (
    select
        block,
        sum(n_items)::bigint as block_items,
        sum(n_payments)::bigint as block_payments,
        sum(n_items::bigint << shift)::bigint as packed_items,
        sum(n_payments::bigint << shift)::bigint as packed_payments
    from counted
    group by 1
)
select
    block,
    packed_items,
    packed_payments,
    coalesce(sum(block_items) over earlier_blocks, 0)::bigint as items_before,
    coalesce(sum(block_payments) over earlier_blocks, 0)::bigint as payments_before
from summed
window earlier_blocks as (order by block rows between unbounded preceding and 1 preceding)
"""
    events = f"""
create table order_events as
select order_day as day, order_id, customer_id, 'placed' as status, ordered_sec,
    ordered_sec as updated_sec
from orders
union all
select cancelled_sec // {DAY}, order_id, customer_id, 'cancelled', ordered_sec, cancelled_sec
from orders where cancelled_sec < {end}
union all
select shipped_sec // {DAY}, order_id, customer_id, 'shipped', ordered_sec, shipped_sec
from orders where shipped_sec < {end}
union all
select completed_sec // {DAY}, order_id, customer_id, 'completed', ordered_sec, completed_sec
from orders where completed_sec < {end}
union all
select returned_sec // {DAY}, order_id, customer_id, 'returned', ordered_sec, returned_sec
from orders where returned_sec < {end}
"""
    return [orders, blocks, events]


def _sql_order_items(plan: _Plan) -> list[str]:
    n_products, popular = plan.products, plan.popular_products
    classes = PRODUCT_CLASSES

    def in_class(count: int, uniform: str, product_class: str = "product_class") -> str:
        """A product id of the given class among products 1..count, from a uniform."""
        per_class = f"(({count} - {product_class} - 1) // {classes} + 1)"
        return f"{classes} * floor({per_class} * {uniform})::bigint + {product_class} + 1"

    # Line k of an order takes a product of class (first_class + k) mod 6 (product_id mod 6),
    # so the products of an order are distinct. Low ids are the popular ones. A product that
    # is inactive when the order is placed is replaced by a popular one of the same class.
    items = f"""
create table order_items as
with lines as (
    select
        orders.order_id,
        orders.ordered_sec,
        orders.order_day,
        orders.first_class,
        order_blocks.items_before
            + earlier_in_block(order_blocks.packed_items, orders.order_id) as items_before,
        unnest(range(orders.n_items)) as line
    from orders
    inner join order_blocks on (orders.order_id - 1) // {BLOCK} = order_blocks.block
),
drawn as (
    select
        *,
        (first_class + line) % {classes} as product_class,
        h2(order_id, line, 'order_item') as h
    from lines
),
candidates as (
    select
        items_before + line + 1 as order_item_id,
        order_id,
        ordered_sec,
        order_day,
        product_class,
        h,
        {in_class(n_products, "pow(f16(h, 0), 1.8)")} as candidate_id
    from drawn
),
checked as (
    select candidates.*, product_versions.is_active, product_versions.price_cents
    from candidates
    inner join product_versions
        on candidates.candidate_id = product_versions.product_id
        and candidates.ordered_sec >= product_versions.valid_from
        and candidates.ordered_sec < product_versions.valid_to
),
resolved as (
    select order_item_id, order_id, order_day, h, candidate_id as product_id, price_cents
    from checked
    where is_active
    union all
    select
        checked.order_item_id,
        checked.order_id,
        checked.order_day,
        checked.h,
        product_versions.product_id,
        product_versions.price_cents
    from checked
    inner join product_versions
        on {in_class(popular, "f16(checked.h, 1)", "checked.product_class")}
            = product_versions.product_id
        and checked.ordered_sec >= product_versions.valid_from
        and checked.ordered_sec < product_versions.valid_to
    where not checked.is_active
)
select
    order_day + case
        when order_day + 1 < {plan.days} and f16(h, 3) < {LATE_ITEM_RATE} then 1 else 0
    end as day,
    order_item_id,
    order_id,
    product_id,
    {_pick("f16(h, 2)", QUANTITIES)} as quantity,
    price_cents as unit_price_cents
from resolved
"""
    totals = """
create table order_totals as
select order_id, sum(quantity * unit_price_cents)::bigint as total_cents
from order_items
group by 1
"""
    return [items, totals]


def _sql_payments(plan: _Plan) -> list[str]:
    end = plan.end_sec
    payments = f"""
create table payments as
with attempts as (
    select order_id, payment_method, 'failed' as status, failed_sec as created_sec, 0 as attempt
    from orders
    where failed_sec < {end}
    union all
    select
        order_id,
        payment_method,
        'succeeded',
        paid_sec,
        coalesce(failed_sec < {end}, false)::integer
    from orders
    where paid_sec < {end}
)
select
    attempts.created_sec // {DAY}
        + case when attempts.created_sec % {DAY} >= {LATE_PAYMENT_FROM_SECOND} then 1 else 0 end
        as day,
    order_blocks.payments_before
        + earlier_in_block(order_blocks.packed_payments, attempts.order_id)
        + attempts.attempt + 1 as payment_id,
    attempts.order_id,
    attempts.payment_method,
    attempts.status,
    order_totals.total_cents as amount,
    attempts.created_sec
from attempts
inner join order_blocks on (attempts.order_id - 1) // {BLOCK} = order_blocks.block
inner join order_totals on attempts.order_id = order_totals.order_id
"""
    # Full refunds follow the return or cancellation within two hours, on the same day, so
    # they land with it; every refund comes at least an hour after its payment.
    refunds = f"""
create table refunds as
with due as (
    select
        order_id,
        'returned' as reason,
        returned_sec + floor(u(order_id, 'refund_delay')
            * least(7200, {DAY} - 1 - returned_sec % {DAY}))::bigint as created_sec,
        100 as percent
    from orders
    where returned_sec is not null
    union all
    select
        order_id,
        'cancelled',
        cancelled_sec + floor(u(order_id, 'refund_delay')
            * least(7200, {DAY} - 1 - cancelled_sec % {DAY}))::bigint,
        100
    from orders
    where is_cancelled and paid_sec is not null
    union all
    select
        order_id,
        case when u(order_id, 'partial_refund_reason') < 0.5 then 'damaged' else 'goodwill' end,
        partial_refund_sec,
        10 + floor(u(order_id, 'partial_refund_percent') * 41)::bigint
    from orders
    where partial_refund_sec is not null
)
select
    due.created_sec // {DAY} as day,
    row_number() over (order by due.created_sec, payments.payment_id) as refund_id,
    payments.payment_id,
    due.order_id,
    case when due.percent = 100 then payments.amount
        else greatest(1, payments.amount * due.percent // 100)
    end as amount,
    due.reason,
    due.created_sec
from due
inner join payments
    on due.order_id = payments.order_id
    and payments.status = 'succeeded'
where due.created_sec < {end}
"""
    return [payments, refunds]


def _sql_sessions(plan: _Plan) -> list[str]:
    per_order = 1 + BROWSING_SESSIONS_PER_ORDER
    # Session numbers are computed, not sorted: order n owns numbers 4n-3 (its converting
    # session) to 4n (three browsing sessions on the same day). Device, channel and landing
    # page are drawn from `attributes` when the files are written.
    sessions = f"""
create table sessions as
with converting as (
    select
        order_id,
        0 as slot,
        customer_id,
        ordered_sec - 300 - floor(f16(h, 0) * 3300)::bigint as started_sec,
        ordered_sec + 60 + floor(f16(h, 1) * 1140)::bigint as ended_sec,
        3 + least(47, floor(-ln(1 - f16(h, 2)) * 5))::integer as page_views
    from (select *, h1(order_id, 'converting_session') as h from orders)
),
browsing_drawn as (
    select
        order_id,
        slot,
        order_day,
        customers_before,
        h2(order_id, slot, 'browsing_session') as h,
        h2(order_id, slot, 'browsing_session_more') as hm
    from orders, range(1, {per_order}) as r(slot)
),
browsing as (
    select
        order_id,
        slot,
        case when f16(hm, 0) >= {ANONYMOUS_SESSION_RATE}
            then 1 + floor(f32(h, 1) * customers_before)::bigint
        end as customer_id,
        order_day * {DAY} + {_second_of_day("f32(h, 0)")} as started_sec,
        1 + least(59, floor(-ln(1 - f16(hm, 1)) * 2))::integer as page_views,
        f16(hm, 2) as u_dwell
    from browsing_drawn
),
unioned as (
    select order_id, slot, customer_id, started_sec, ended_sec, page_views from converting
    union all
    select
        order_id,
        slot,
        customer_id,
        started_sec,
        -- under 5 minutes: never mistaken for the converting session of an order
        started_sec + least(299, page_views * (10 + floor(u_dwell * 50)::bigint)),
        page_views
    from browsing
)
select
    started_sec // {DAY} as day,
    {per_order} * (order_id - 1) + slot + 1 as session_number,
    customer_id,
    started_sec,
    ended_sec,
    page_views,
    h2(order_id, slot, 'session_attributes') as attributes
from unioned
"""
    return [sessions]


@dataclass(frozen=True)
class _Step:
    """Statements to run, then the landed tables to write, then the tables no longer needed."""

    statements: list[str]
    writes: tuple[str, ...] = ()
    drops: tuple[str, ...] = ()


def _steps(plan: _Plan) -> list[_Step]:
    # Writing each table as soon as it is built, and dropping what later steps do not need,
    # keeps the peak memory at 10 million order items around a gigabyte.
    return [
        _Step([*_macros(plan), _sql_days(plan)]),
        _Step(
            _sql_customers(plan),
            writes=("shop/customers",),
            drops=("customers", "customer_updates", "out_shop_customers"),
        ),
        _Step(
            _sql_products(plan),
            writes=("shop/products",),
            drops=("products", "out_shop_products"),
        ),
        _Step(_sql_orders(plan), writes=("shop/orders",), drops=("order_events",)),
        _Step(
            _sql_order_items(plan),
            writes=("shop/order_items",),
            drops=("order_items", "product_versions"),
        ),
        _Step(
            _sql_payments(plan),
            writes=("payments/payments", "payments/refunds"),
            drops=("payments", "refunds", "order_totals", "order_blocks"),
        ),
        _Step(_sql_sessions(plan), writes=("web/sessions",), drops=("sessions", "orders")),
    ]


def _exports(plan: _Plan) -> dict[str, tuple[str, str, str]]:
    """Per table: the relation, its columns as written, and the order of rows in a file."""
    categories = _list([name for name, *_ in CATEGORIES])
    target = "f16(attributes, 3)"
    landing_page = f"""case
        when f16(attributes, 2) < 0.3 then '/'
        when f16(attributes, 2) < 0.7
            then '/products/' || (1 + floor({target} * {plan.products})::bigint)
        when f16(attributes, 2) < 0.9
            then '/category/' || {categories}[1 + floor({target} * {len(CATEGORIES)})::bigint]
        else '/sale'
    end"""
    exports = {
        "shop/customers": (
            "out_shop_customers",
            "customer_id, first_name, last_name, email, country_code,"
            " ts(signed_up_sec) as signed_up_at, ts(updated_sec) as updated_at",
            "customer_id",
        ),
        "shop/products": (
            "out_shop_products",
            "product_id, product_name, category, money(price_cents) as unit_price, is_active,"
            " ts(updated_sec) as updated_at",
            "product_id",
        ),
        "shop/orders": (
            "order_events",
            "order_id, customer_id, status, ts(ordered_sec) as ordered_at,"
            " ts(updated_sec) as updated_at",
            "order_id",
        ),
        "shop/order_items": (
            "order_items",
            "order_item_id, order_id, product_id, quantity, money(unit_price_cents) as unit_price",
            "order_item_id",
        ),
        "payments/payments": (
            "payments",
            "payment_id, order_id, payment_method, status, amount::bigint as amount,"
            " iso_ts(created_sec) as created_at",
            "payment_id",
        ),
        "payments/refunds": (
            "refunds",
            "refund_id, payment_id, order_id, amount::bigint as amount, reason,"
            " iso_ts(created_sec) as created_at",
            "refund_id",
        ),
        "web/sessions": (
            "sessions",
            "'s' || lpad(session_number::varchar, 12, '0') as session_id,"
            " customer_id::bigint as customer_id, ts(started_sec) as started_at,"
            " ts(ended_sec) as ended_at,"
            f" {_pick('f16(attributes, 0)', DEVICES)} as device,"
            f" {_pick('f16(attributes, 1)', CHANNELS)} as channel,"
            f" {landing_page} as landing_page,"
            " page_views::integer as page_views",
            "session_number",
        ),
    }
    assert set(exports) == {spec.key for spec in TABLES}
    return exports


# --- Writing -------------------------------------------------------------------------------
def _write_table(
    con: duckdb.DuckDBPyConnection, plan: _Plan, spec: LandingTable, root: Path
) -> tuple[int, int]:
    """Write one file per day that has rows; return the number of files and of rows."""
    relation, columns, order_by = _exports(plan)[spec.key]
    per_day = con.execute(
        f"select day, count(*) from {relation} where day < ? group by 1 order by 1", [plan.days]
    ).fetchall()
    folder = root / spec.source / spec.table
    folder.mkdir(parents=True)
    for day, _ in per_day:
        day_date = date.fromordinal(plan.start.toordinal() + day)
        path = folder / f"{spec.table}_{day_date.isoformat()}.{spec.extension}"
        con.execute(
            f"copy (select {columns} from {relation} where day = {day} order by {order_by})"
            f" to {_lit(str(path))} ({COPY_OPTIONS[spec.extension]})"
        ).fetchall()
    return len(per_day), sum(count for _, count in per_day)


def _existing_files(landing_dir: Path) -> list[Path]:
    found = []
    for spec in TABLES:
        folder = landing_dir / spec.source / spec.table
        if folder.is_dir():
            if any(path.is_file() for path in folder.rglob("*")):
                found.append(folder)
        elif folder.exists():
            found.append(folder)
    return found


def generate(
    landing_dir: Path,
    *,
    order_items: int = 50_000,
    days: int = 30,
    start: date = date(2025, 1, 1),
    seed: int = 42,
    threads: int | None = None,
    overwrite: bool = False,
) -> GenerationSummary:
    """Write ``days`` daily files per table into ``landing_dir`` and say what was written.

    ``order_items`` is the approximate total of order lines; everything else scales from it.
    Existing files of these tables are refused unless ``overwrite=True``, which deletes those
    table folders (and nothing else) first. Files are written to a hidden staging folder inside
    ``landing_dir`` and moved into place table by table, so readers never see half a file.
    """
    plan = _plan(order_items, days, start, seed, threads)
    landing_dir = Path(landing_dir)
    existing = _existing_files(landing_dir)
    if existing and not overwrite:
        listed = ", ".join(str(path) for path in existing)
        raise ValueError(
            f"Landing folder {landing_dir} already holds sample data ({listed}). "
            "Pass overwrite=True (--overwrite on the command line) to replace those table "
            "folders, or choose another landing folder."
        )
    landing_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".sample_data-", dir=landing_dir))
    specs = {spec.key: spec for spec in TABLES}
    files: dict[str, int] = {}
    rows: dict[str, int] = {}
    try:
        with closing(duckdb.connect()) as con:
            if threads is not None:
                con.execute(f"set threads = {threads}")
            for step in _steps(plan):
                for statement in step.statements:
                    con.execute(statement).fetchall()
                for key in step.writes:
                    files[key], rows[key] = _write_table(con, plan, specs[key], staging)
                for table in step.drops:
                    con.execute(f"drop table {table}").fetchall()
        for spec in TABLES:
            target = landing_dir / spec.source / spec.table
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / spec.source / spec.table, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    order = [spec.key for spec in TABLES]
    return GenerationSummary(
        files={key: files[key] for key in order}, rows={key: rows[key] for key in order}
    )


# --- Command line --------------------------------------------------------------------------
def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2025-01-01, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m dataops.sample_data.generator [--landing-dir DIR] ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m dataops.sample_data.generator",
        description="Generate deterministic online-shop sample files into the landing folder.",
    )
    parser.add_argument(
        "--landing-dir",
        type=Path,
        help="where to write (default: $DATAOPS_LANDING, else $DATAOPS_HOME/landing)",
    )
    parser.add_argument("--order-items", type=int, default=50_000, help="approximate order lines")
    parser.add_argument("--days", type=int, default=30, help="days in the window (default 30)")
    parser.add_argument("--start", type=_iso_date, default=date(2025, 1, 1), help="first day")
    parser.add_argument("--seed", type=int, default=42, help="same seed, same bytes")
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing table folders")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    try:
        if args.landing_dir is None:
            from dataops.core.settings import load_settings

            args.landing_dir = load_settings().landing_dir
        summary = generate(
            args.landing_dir,
            order_items=args.order_items,
            days=args.days,
            start=args.start,
            seed=args.seed,
            threads=args.threads,
            overwrite=args.overwrite,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    print(f"Sample data in {args.landing_dir} ({elapsed:.1f} s):")
    print(summary.format())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
