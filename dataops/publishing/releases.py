"""Releases of a published warehouse: their record, the switch, rollback and cleanup.

A release ``r<id>`` holds its relations in physical schemas ``<schema>__r<id>``. What readers
query, ``<schema>.<name>``, is a view on one physical relation; the map from published name to
physical schema is the release's *pointers* (a partial build points what it rebuilt to itself
and keeps the rest of the current release). ``platform.releases`` records every release (id, git
sha, manifest, times, selection, built and changed nodes, failing tests, pointers, status), and
exactly one published release is current. The switch, a rollback and the recording of the new
current release happen in ONE transaction (DuckDB's and PostgreSQL's DDL is transactional): a
reader sees the previous or the new release, never a mix, and a process killed mid-switch leaves
the previous release whole.

The SQL is written once for a DuckDB connection; on PostgreSQL the connection is a
:class:`~dataops.publishing.connections.PostgresConnection` (same ``execute``), and the switch
first locks every published relation (waiting at most ``SWITCH_LOCK_TIMEOUT_MS`` at a time for
readers' transactions, then retrying, so it never deadlocks with a reader) and replaces a view
whose columns changed by drop + create, still inside the one transaction.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from dataops.core.sql import quote_identifier
from dataops.core.warehouse import PLATFORM_SCHEMA
from dataops.publishing.connections import Connection, is_postgres

RELEASES_TABLE = f"{PLATFORM_SCHEMA}.releases"
RELEASE_SCHEMA = re.compile(r"(?P<base>.+)__r(?P<id>[1-9][0-9]*)")
# Test hook (tests/python/test_publishing.py): seconds to wait inside the switch transaction,
# after half the relations were re-pointed, so a test can kill -9 the process there.
SWITCH_PAUSE_ENV = "DATAOPS_PUBLISH_SWITCH_PAUSE"
# PostgreSQL: one wait for the published relations' locks (below the server's deadlock_timeout,
# 1 s by default, so a reader is never the one a deadlock aborts), and how long to keep retrying.
SWITCH_LOCK_TIMEOUT_MS = 200
SWITCH_LOCK_WAIT_SECONDS = 300.0

RELEASES_DDL = f"""
create schema if not exists {PLATFORM_SCHEMA};
create table if not exists {RELEASES_TABLE} (
    release_id integer primary key,
    status varchar not null,          -- building, published, failed, abandoned
    is_current boolean not null default false,
    trigger varchar,                  -- deploy, dagster, build, ...
    git_commit varchar,
    selection varchar,
    started_at timestamp not null,
    finished_at timestamp,
    published_at timestamp,           -- last time it became current (publish or rollback)
    manifest_path varchar,
    built_nodes varchar,              -- JSON list of unique ids built into this release
    changed_nodes varchar,            -- JSON list: nodes whose code differs from the previous
    failures varchar,                 -- JSON list of failing tests/models
    pointers varchar,                 -- JSON: published relation -> physical schema, node
    dagster_run_id varchar,
    dropped_at timestamp              -- its physical schemas were dropped by the cleanup
);
"""


class PublishingError(RuntimeError):
    """A release cannot be built, published or rolled back; the message says what to do."""


@dataclass(frozen=True)
class Pointer:
    """One published relation ``schema.name`` and where it reads from."""

    schema: str
    name: str
    physical: str  # the physical schema, <schema>__r<id>
    node: str  # dbt unique id
    materialized: str

    @property
    def published(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def release_id(self) -> int:
        match = RELEASE_SCHEMA.fullmatch(self.physical)
        assert match, self.physical
        return int(match["id"])


@dataclass
class Release:
    release_id: int
    status: str
    is_current: bool
    trigger: str | None
    git_commit: str | None
    selection: str | None
    started_at: datetime
    finished_at: datetime | None
    published_at: datetime | None
    manifest_path: str | None
    built_nodes: list[str] = field(default_factory=list)
    changed_nodes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    pointers: dict[str, Pointer] = field(default_factory=dict)
    dagster_run_id: str | None = None
    dropped_at: datetime | None = None

    @property
    def name(self) -> str:
        return release_name(self.release_id)


def release_name(release_id: int) -> str:
    """``r<id>``: the value of the dbt var ``dataops_release`` and the schemas' suffix."""
    return f"r{release_id}"


def physical_schema(schema: str, release_id: int) -> str:
    return f"{schema}__{release_name(release_id)}"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _json_list(text: str | None) -> list[str]:
    return list(json.loads(text)) if text else []


def _pointers(text: str | None) -> dict[str, Pointer]:
    if not text:
        return {}
    return {key: Pointer(**value) for key, value in json.loads(text).items()}


def dump_pointers(pointers: Mapping[str, Pointer]) -> str:
    return json.dumps({k: asdict(p) for k, p in sorted(pointers.items())}, sort_keys=True)


COLUMNS = (
    "release_id, status, is_current, trigger, git_commit, selection, started_at, finished_at, "
    "published_at, manifest_path, built_nodes, changed_nodes, failures, pointers, "
    "dagster_run_id, dropped_at"
)


def _release(row: tuple) -> Release:
    (
        rid,
        status,
        current,
        trigger,
        commit,
        selection,
        started,
        finished,
        published,
        manifest,
        built,
        changed,
        failures,
        pointers,
        run_id,
        dropped,
    ) = row
    return Release(
        rid,
        status,
        bool(current),
        trigger,
        commit,
        selection,
        started,
        finished,
        published,
        manifest,
        _json_list(built),
        _json_list(changed),
        _json_list(failures),
        _pointers(pointers),
        run_id,
        dropped,
    )


def ensure_releases(con: Connection) -> None:
    con.execute(RELEASES_DDL)


def list_releases(con: Connection) -> list[Release]:
    """Every recorded release, newest first (an empty list before the first one)."""
    if not _has_releases_table(con):
        return []
    rows = con.execute(f"select {COLUMNS} from {RELEASES_TABLE} order by release_id desc")
    return [_release(row) for row in rows.fetchall()]


def get_release(con: Connection, release_id: int) -> Release | None:
    if not _has_releases_table(con):
        return None
    row = con.execute(
        f"select {COLUMNS} from {RELEASES_TABLE} where release_id = ?", [release_id]
    ).fetchone()
    return _release(row) if row else None


def current_release(con: Connection) -> Release | None:
    if not _has_releases_table(con):
        return None
    row = con.execute(f"select {COLUMNS} from {RELEASES_TABLE} where is_current").fetchone()
    return _release(row) if row else None


def _has_releases_table(con: Connection) -> bool:
    [(found,)] = con.execute(
        "select count(*) from information_schema.tables where table_catalog = current_database() "
        "and table_schema = ? and table_name = 'releases'",
        [PLATFORM_SCHEMA],
    ).fetchall()
    return bool(found)


def release_schemas(con: Connection) -> dict[int, list[str]]:
    """The physical schemas in the warehouse, by release id."""
    found: dict[int, list[str]] = {}
    for (schema,) in con.execute(
        "select schema_name from information_schema.schemata "
        "where catalog_name = current_database()"
    ).fetchall():
        match = RELEASE_SCHEMA.fullmatch(schema)
        if match:
            found.setdefault(int(match["id"]), []).append(schema)
    return found


def drop_release_schemas(con: Connection, release_id: int) -> list[str]:
    schemas = release_schemas(con).get(release_id, [])
    for schema in schemas:
        con.execute(f"drop schema if exists {quote_identifier(schema)} cascade")
    return schemas


def recover_interrupted(con: Connection) -> list[int]:
    """Releases left ``building`` by a process that died (kill -9, power loss): marked
    ``abandoned`` and their physical schemas dropped. Call with the publishing lock held."""
    ensure_releases(con)
    ids = [
        rid
        for (rid,) in con.execute(
            f"select release_id from {RELEASES_TABLE} where status = 'building'"
        ).fetchall()
    ]
    for rid in ids:
        drop_release_schemas(con, rid)
        con.execute(
            f"update {RELEASES_TABLE} set status = 'abandoned', finished_at = ?, dropped_at = ? "
            "where release_id = ?",
            [_now(), _now(), rid],
        )
    return ids


def begin_release(
    con: Connection,
    *,
    trigger: str,
    selection: str,
    git_commit: str | None,
    dagster_run_id: str | None = None,
) -> int:
    """Record a new release (status ``building``) and return its id."""
    ensure_releases(con)
    [(last,)] = con.execute(f"select coalesce(max(release_id), 0) from {RELEASES_TABLE}").fetchall()
    # Schemas of a release that was never recorded (killed between creating them and the insert)
    # must not be reused: start after them too.
    leftover = max(release_schemas(con), default=0)
    release_id = max(last, leftover) + 1
    con.execute(
        f"insert into {RELEASES_TABLE} (release_id, status, trigger, git_commit, selection, "
        "started_at, dagster_run_id) values (?, 'building', ?, ?, ?, ?, ?)",
        [release_id, trigger, git_commit, selection, _now(), dagster_run_id],
    )
    return release_id


def relation_type(con: Connection, schema: str, name: str) -> str | None:
    """``BASE TABLE``, ``VIEW`` or None, for a relation of the connected warehouse."""
    row = con.execute(
        "select table_type from information_schema.tables where table_catalog = "
        "current_database() and table_schema = ? and table_name = ?",
        [schema, name],
    ).fetchone()
    return row[0] if row else None


def _relation(schema: str, name: str) -> str:
    return f"{quote_identifier(schema)}.{quote_identifier(name)}"


def prepare_release(
    con: Connection,
    release_id: int,
    current: Release | None,
    selected: set[str] | None,
    *,
    full_refresh: bool = False,
) -> None:
    """Make the release's schemas ready for dbt before it builds ``selected`` (None: everything).

    A node of the current release that is not selected gets a view on its current relation in
    the release's schema, so the selected models' refs resolve to the current release. A
    selected incremental model gets a copy of its current table: dbt then adds to it, as it would
    in place, instead of rebuilding it from scratch (unless ``full_refresh``).
    """
    for pointer in (current.pointers if current else {}).values():
        target = physical_schema(pointer.schema, release_id)
        con.execute(f"create schema if not exists {quote_identifier(target)}")
        source = _relation(pointer.physical, pointer.name)
        if selected is not None and pointer.node not in selected:
            view = _relation(target, pointer.name)
            con.execute(f"create or replace view {view} as select * from {source}")
        elif pointer.materialized == "incremental" and not full_refresh:
            copy = _relation(target, pointer.name)
            con.execute(f"drop table if exists {copy}")
            con.execute(f"create table {copy} as select * from {source}")


def finish_failed(
    con: Connection,
    release_id: int,
    *,
    failures: Iterable[str],
    built: Iterable[str],
    manifest_path: str | None,
) -> None:
    """The audit failed: nothing published; the release's schemas stay for inspection."""
    con.execute(
        f"update {RELEASES_TABLE} set status = 'failed', finished_at = ?, failures = ?, "
        "built_nodes = ?, manifest_path = ? where release_id = ?",
        [_now(), json.dumps(list(failures)), json.dumps(sorted(built)), manifest_path, release_id],
    )


def _switch_views(
    con: Connection,
    pointers: Mapping[str, Pointer],
    previous: Mapping[str, Pointer],
) -> None:
    """Re-point every published relation to ``pointers`` (inside the caller's transaction)."""
    pause = float(os.environ.get(SWITCH_PAUSE_ENV) or 0)
    items = sorted(pointers.values(), key=lambda p: p.published)
    if is_postgres(con):
        _lock_published(con, [*items, *previous.values()])
    for index, pointer in enumerate(items):
        if pause and index == len(items) // 2:
            print(f"publishing: switch paused for {pause} s", flush=True)
            time.sleep(pause)
        current = previous.get(pointer.published)
        if current is not None and current.physical == pointer.physical:
            continue  # already reads from there
        con.execute(f"create schema if not exists {quote_identifier(pointer.schema)}")
        existing = relation_type(con, pointer.schema, pointer.name)
        if existing == "BASE TABLE":  # built in place before releases existed
            con.execute(f"drop table {_relation(pointer.schema, pointer.name)}")
        view = _relation(pointer.schema, pointer.name)
        query = f"select * from {_relation(pointer.physical, pointer.name)}"
        if is_postgres(con):
            con.replace_view(view, query)
        else:
            con.execute(f"create or replace view {view} as {query}")
    for key, pointer in previous.items():
        if key not in pointers:  # a model removed from the project
            con.execute(f"drop view if exists {_relation(pointer.schema, pointer.name)}")


def _lock_published(con: Connection, pointers: Iterable[Pointer]) -> None:
    """PostgreSQL: take every published relation's lock before changing any, so a reader's
    transaction sees all of them before or all after the switch (never some of each)."""
    names = sorted({(p.schema, p.name) for p in pointers})
    present = [_relation(s, n) for s, n in names if relation_type(con, s, n) is not None]
    if present:
        con.execute(f"lock table {', '.join(present)} in access exclusive mode")


def switch(
    con: Connection,
    release_id: int,
    pointers: Mapping[str, Pointer],
    *,
    built: Iterable[str] = (),
    changed: Iterable[str] = (),
    manifest_path: str | None = None,
    rollback: bool = False,
) -> float:
    """Publish a release: re-point the views and make it current, in one transaction.

    Returns the seconds the switch took (on PostgreSQL including waits for readers' locks)."""
    started = time.perf_counter()
    deadline = time.monotonic() + SWITCH_LOCK_WAIT_SECONDS
    delay = 0.05
    while True:
        try:
            _switch_once(
                con,
                release_id,
                pointers,
                built=built,
                changed=changed,
                manifest_path=manifest_path,
                rollback=rollback,
            )
            return time.perf_counter() - started
        except Exception as error:
            if not (is_postgres(con) and con.is_lock_conflict(error)):
                raise
            if time.monotonic() > deadline:
                raise PublishingError(
                    f"Readers held locks on the published relations for over "
                    f"{SWITCH_LOCK_WAIT_SECONDS:.0f} s; release r{release_id} was not switched "
                    "(the previous one stays published). Retry when the long queries are done."
                ) from error
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _switch_once(
    con: Connection,
    release_id: int,
    pointers: Mapping[str, Pointer],
    *,
    built: Iterable[str],
    changed: Iterable[str],
    manifest_path: str | None,
    rollback: bool,
) -> None:
    con.execute("begin transaction")
    try:
        if is_postgres(con):
            con.execute(f"set local lock_timeout = {SWITCH_LOCK_TIMEOUT_MS}")
        previous = current_release(con)
        _switch_views(con, pointers, previous.pointers if previous else {})
        con.execute(f"update {RELEASES_TABLE} set is_current = false where is_current")
        if rollback:
            con.execute(
                f"update {RELEASES_TABLE} set is_current = true, published_at = ? "
                "where release_id = ?",
                [_now(), release_id],
            )
        else:
            now = _now()
            con.execute(
                f"update {RELEASES_TABLE} set status = 'published', is_current = true, "
                "finished_at = ?, published_at = ?, built_nodes = ?, changed_nodes = ?, "
                "pointers = ?, manifest_path = ? where release_id = ?",
                [
                    now,
                    now,
                    json.dumps(sorted(built)),
                    json.dumps(sorted(changed)),
                    dump_pointers(pointers),
                    manifest_path,
                    release_id,
                ],
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def rollback(con: Connection, release_id: int | None = None) -> Release:
    """Make a previously published release current again (default: the one before the current)."""
    current = current_release(con)
    candidates = [
        r
        for r in list_releases(con)
        if r.status == "published" and r.dropped_at is None and not r.is_current
    ]
    if release_id is None:
        older = [r for r in candidates if current is None or r.release_id < current.release_id]
        if not older:
            raise PublishingError(
                "No earlier published release to roll back to (`dataops releases` lists them)."
            )
        target = older[0]
    else:
        target = next((r for r in candidates if r.release_id == release_id), None)
        if target is None:
            known = get_release(con, release_id)
            why = (
                "is not recorded"
                if known is None
                else "is already current"
                if known.is_current
                else f"was cleaned up at {known.dropped_at}"
                if known.dropped_at
                else f"has status {known.status}: only published releases can be restored"
            )
            raise PublishingError(f"Release r{release_id} {why}; `dataops releases` lists them.")
    missing = [
        p.published
        for p in target.pointers.values()
        if relation_type(con, p.physical, p.name) is None
    ]
    if missing:
        raise PublishingError(
            f"Release {target.name} cannot be restored: its relations {missing[:5]} are gone."
        )
    switch(con, target.release_id, target.pointers, rollback=True)
    restored = get_release(con, target.release_id)
    assert restored is not None
    return restored


def cleanup(con: Connection, keep: int) -> list[int]:
    """Drop the physical schemas of releases beyond the ``keep`` most recent published ones.

    Kept: the current release, the ``keep`` newest published releases (rollback targets), the
    releases any of them still reads from (a partial build points to older releases), and failed
    releases newer than the oldest kept one (their build stays inspectable). Returns the ids
    dropped.
    """
    if keep < 1:
        raise PublishingError(f"Keep at least one release, got {keep}.")
    releases = list_releases(con)
    published = [r for r in releases if r.status == "published" and r.dropped_at is None]
    kept = {r.release_id for r in published[:keep]} | {
        r.release_id for r in releases if r.is_current
    }
    needed = set(kept)
    for release in releases:
        if release.release_id in kept:
            needed |= {p.release_id for p in release.pointers.values()}
    oldest = min(kept, default=0)
    needed |= {
        r.release_id
        for r in releases
        if r.status in ("failed", "building") and r.release_id > oldest
    }
    dropped = []
    for rid in sorted(release_schemas(con)):
        if rid in needed:
            continue
        drop_release_schemas(con, rid)
        dropped.append(rid)
    for release in releases:
        if release.release_id not in needed and release.dropped_at is None:
            con.execute(
                f"update {RELEASES_TABLE} set dropped_at = ? where release_id = ?",
                [_now(), release.release_id],
            )
            if release.release_id not in dropped:
                dropped.append(release.release_id)
    return sorted(set(dropped))
