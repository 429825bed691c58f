"""The project rules: conventions of STYLE.md checked on dbt's manifest (target/manifest.json).

In the spirit of dbt-project-evaluator, but offline and fast: each rule is a function from the
parsed manifest to violations. A violation names the rule, the node, its file, the problem and
how to fix it. Rules only read the manifest; they never touch a warehouse.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dataops.sources.registry import PLACEHOLDER

Node = dict[str, Any]
Manifest = dict[str, Any]

LAYERS = ("staging", "intermediate", "marts")
MART_PREFIXES = ("fct_", "dim_")
SNAKE_CASE = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Violation:
    """One broken rule on one node."""

    rule: str
    node: str  # model name, or `source.table` for a source table
    unique_id: str
    file: str
    problem: str
    fix: str

    def render(self) -> str:
        return (
            f"[{self.rule}] {self.unique_id.split('.')[0]} {self.node} ({self.file})\n"
            f"  problem: {self.problem}\n"
            f"  fix: {self.fix}"
        )


@dataclass(frozen=True)
class Rule:
    name: str
    summary: str
    check: Callable[[Manifest], Iterator[Violation]]


RULES: dict[str, Rule] = {}


def rule(name: str, summary: str):
    def register(check: Callable[[Manifest], Iterator[Violation]]):
        RULES[name] = Rule(name, summary, check)
        return check

    return register


# --- Manifest helpers ---------------------------------------------------------------------------
def project_name(manifest: Manifest) -> str:
    return manifest["metadata"]["project_name"]


def models(manifest: Manifest) -> Iterator[Node]:
    """The project's own models (installed packages are not ours to judge)."""
    own = project_name(manifest)
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["package_name"] == own:
            yield node


def sources(manifest: Manifest) -> Iterator[Node]:
    own = project_name(manifest)
    for node in manifest["sources"].values():
        if node["package_name"] == own:
            yield node


def layer(node: Node) -> str | None:
    """staging, intermediate or marts from the folder under models/; None elsewhere."""
    first = node["path"].replace("\\", "/").split("/")[0]
    return first if first in LAYERS else None


def yaml_file(node: Node) -> str | None:
    """The YAML file that documents the node (dbt's patch_path is `project://path`)."""
    patch = node.get("patch_path")
    return patch.split("://", 1)[-1] if patch else None


def _yaml_hint(node: Node) -> str:
    existing = yaml_file(node)
    if existing:
        return existing
    folder = node["original_file_path"].rsplit("/", 1)[0]
    return f"a YAML file in {folder}/ (e.g. {folder}/_{folder.rsplit('/', 1)[-1]}__models.yml)"


def upstream(node: Node) -> list[str]:
    return list(node.get("depends_on", {}).get("nodes", []))


def source_label(source: Node) -> str:
    return f"{source['source_name']}.{source['name']}"


def _violation(rule_name: str, node: Node, problem: str, fix: str) -> Violation:
    label = source_label(node) if node["resource_type"] == "source" else node["name"]
    return Violation(rule_name, label, node["unique_id"], node["original_file_path"], problem, fix)


def described(text: str | None) -> bool:
    """A real description: not empty and not the draft's placeholder (`dataops sources add`)."""
    return bool((text or "").strip()) and PLACEHOLDER not in text


def primary_key(node: Node, manifest: Manifest) -> tuple[tuple[str, ...] | None, str]:
    """The model's primary key columns (one, or several for a composite key) and their origin.

    `config.meta.primary_key` wins; a staging model takes its source table's
    `config.meta.primary_key` (the registry); otherwise the first column documented in YAML.
    """
    meta = node.get("config", {}).get("meta") or node.get("meta") or {}
    if meta.get("primary_key"):
        return _key_columns(meta["primary_key"]), "config.meta.primary_key"
    if layer(node) == "staging":
        for uid in upstream(node):
            source = manifest["sources"].get(uid)
            if source and (source.get("meta") or {}).get("primary_key"):
                key = source["meta"]["primary_key"]
                where = f"meta.primary_key of source {source_label(source)}"
                return _key_columns(key), where
    columns = list(node.get("columns", {}))
    if columns:
        return (columns[0],), "the first column in YAML"
    return None, ""


def _key_columns(value: Any) -> tuple[str, ...]:
    return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)


def column_tests(manifest: Manifest, model_uid: str) -> dict[str, set[str]]:
    """Generic data tests attached to a model, by column: {column: {unique, not_null, ...}}."""
    tests: dict[str, set[str]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test" or not node.get("test_metadata"):
            continue
        if node.get("attached_node") != model_uid or not node.get("column_name"):
            continue
        column = node["column_name"].strip('"`').lower()
        tests.setdefault(column, set()).add(node["test_metadata"]["name"])
    return tests


# Generic tests that test a key as a whole, and the argument naming its columns:
# tests/dbt/generic/test_primary_key.sql and test_staging_rules.sql (derived staging tests).
KEY_TESTS = {"primary_key": "columns", "staging_rules": "primary_key"}


def key_tests(manifest: Manifest, model_uid: str) -> list[frozenset[str]]:
    """The column sets tested by `primary_key` (or `staging_rules`) tests of a model."""
    found = []
    for node in manifest["nodes"].values():
        metadata = node.get("test_metadata") or {}
        if node["resource_type"] != "test" or metadata.get("name") not in KEY_TESTS:
            continue
        if node.get("attached_node") != model_uid:
            continue
        argument = KEY_TESTS[metadata["name"]]
        columns = (metadata.get("kwargs") or {}).get(argument) or node.get("column_name")
        if columns:
            found.append(frozenset(c.strip('"`').lower() for c in _key_columns(columns)))
    return found


def key_is_tested(manifest: Manifest, model_uid: str, key: tuple[str, ...]) -> list[str]:
    """What is missing to test the key: [] when a primary_key test covers exactly these columns,
    or (one-column key) the column has both unique and not_null."""
    wanted = frozenset(column.lower() for column in key)
    if wanted in key_tests(manifest, model_uid):
        return []
    if len(key) > 1:
        return [f"primary_key test of ({', '.join(key)})"]
    found = column_tests(manifest, model_uid).get(key[0].lower(), set())
    return [name for name in ("unique", "not_null") if name not in found]


# --- The rules ----------------------------------------------------------------------------------
@rule("model_naming", "models are named for their layer: stg_<source>__, int_, fct_/dim_")
def check_model_naming(manifest: Manifest) -> Iterator[Violation]:
    for node in models(manifest):
        name, where = node["name"], layer(node)
        parts = node["path"].replace("\\", "/").split("/")
        if where is None:
            yield _violation(
                "model_naming",
                node,
                f"{node['original_file_path']} is outside the layer folders "
                "(models/staging, models/intermediate, models/marts)",
                "move it into the folder of its layer and name it for that layer "
                "(stg_<source>__<entity>s, int_<entity>s_<verb>ed, fct_<event>s or dim_<entity>s)",
            )
        elif where == "staging":
            source = parts[1] if len(parts) > 2 else None
            expected = f"stg_{source}__" if source else "stg_<source>__"
            if source is None or not name.startswith(expected) or name == expected:
                yield _violation(
                    "model_naming",
                    node,
                    f"staging model {name!r} is not named {expected}<entity>s"
                    + ("" if source else " and is not in a source folder"),
                    f"rename it to {expected}<entity>s in models/staging/<source>/ "
                    "(staging models are generated: declare the table in the source's "
                    "_<source>__sources.yml and run `dataops sources sync`)",
                )
        elif where == "intermediate" and not name.startswith("int_"):
            yield _violation(
                "model_naming",
                node,
                f"intermediate model {name!r} does not start with int_",
                "rename it int_<entity>s_<verb>ed (named for what it does, e.g. "
                "int_payments_pivoted_to_orders), file and YAML entry alike",
            )
        elif where == "marts" and not name.startswith(MART_PREFIXES):
            yield _violation(
                "model_naming",
                node,
                f"mart {name!r} does not start with fct_ or dim_",
                "name marts for their grain: fct_<event>s for facts, dim_<entity>s for "
                "dimensions (rename the file and its YAML entry)",
            )
        if where is not None and not SNAKE_CASE.fullmatch(name):
            yield _violation(
                "model_naming",
                node,
                f"model name {name!r} is not lower snake_case",
                "rename it with lower-case letters, digits and underscores only",
            )


@rule("source_outside_staging", "only staging models call source()")
def check_source_outside_staging(manifest: Manifest) -> Iterator[Violation]:
    for node in models(manifest):
        if layer(node) == "staging":
            continue
        called = [manifest["sources"][uid] for uid in upstream(node) if uid.startswith("source.")]
        if called:
            calls = ", ".join(f"source('{s['source_name']}', '{s['name']}')" for s in called)
            refs = ", ".join(f"ref('stg_{s['source_name']}__{s['name']}')" for s in called)
            yield _violation(
                "source_outside_staging",
                node,
                f"calls {calls} but is not a staging model",
                f"read the staging model instead: {refs} (declare the table in the source "
                "registry and run `dataops sources sync` if it has no staging model)",
            )


def _source_path(manifest: Manifest, start: Node) -> list[str] | None:
    """A path from a model through other non-staging models to a source (direct calls aside)."""
    seen: set[str] = set()
    stack: list[tuple[str, list[str]]] = [
        (uid, [uid]) for uid in upstream(start) if not uid.startswith("source.")
    ]
    while stack:
        uid, path = stack.pop()
        if uid in seen:
            continue
        seen.add(uid)
        if uid.startswith("source."):
            return path
        node = manifest["nodes"].get(uid)
        if node is None or node["resource_type"] != "model" or layer(node) == "staging":
            continue
        stack.extend((parent, [*path, parent]) for parent in upstream(node))
    return None


@rule(
    "mart_or_intermediate_reads_source",
    "no mart or intermediate model reads a source through a non-staging model",
)
def check_mart_reads_source(manifest: Manifest) -> Iterator[Violation]:
    # A direct source() call is reported by source_outside_staging; this rule follows the
    # lineage: a mart reading a model that itself reads raw data bypasses staging all the same.
    for node in models(manifest):
        if layer(node) not in ("intermediate", "marts"):
            continue
        path = _source_path(manifest, node)
        if path is None:
            continue
        source = manifest["sources"][path[-1]]
        via = " -> ".join(uid.split(".")[-1] for uid in path[:-1])
        yield _violation(
            "mart_or_intermediate_reads_source",
            node,
            f"reads source {source_label(source)} through {via}, bypassing staging",
            f"read ref('stg_{source['source_name']}__{source['name']}'), the staging model of "
            f"that table, here and in {via} (declare the table in the source registry and run "
            "`dataops sources sync` if it has no staging model)",
        )


@rule("staging_reads_model", "a staging model reads only its source, never another model")
def check_staging_reads_model(manifest: Manifest) -> Iterator[Violation]:
    for node in models(manifest):
        if layer(node) != "staging":
            continue
        refs = [uid.split(".")[-1] for uid in upstream(node) if uid.startswith("model.")]
        if refs:
            yield _violation(
                "staging_reads_model",
                node,
                f"staging model reads other models ({', '.join(refs)})",
                "staging is 1:1 with a source table: select only from source(); move joins "
                "and lookups to an intermediate model (models/intermediate/<domain>/int_*.sql)",
            )


@rule("model_documented", "every model and each of its YAML columns has a description")
def check_model_documented(manifest: Manifest) -> Iterator[Violation]:
    for node in models(manifest):
        target = _yaml_hint(node)
        if not described(node.get("description")):
            yield _violation(
                "model_documented",
                node,
                "the model has no description",
                f"add an entry `- name: {node['name']}` with a `description:` to {target} "
                "(marts: the first sentence states the grain)",
            )
        undocumented = [
            name for name, column in node.get("columns", {}).items()
            if not described(column.get("description"))
        ]
        if undocumented:
            yield _violation(
                "model_documented",
                node,
                f"columns without a description: {', '.join(undocumented)}",
                f"add a `description:` to each of these columns in {target} (a staging "
                f"model's come from its source declaration: replace its `{PLACEHOLDER}` "
                "placeholders there and run `dataops sources sync`)",
            )


@rule("source_documented", "every source and source table has a description")
def check_source_documented(manifest: Manifest) -> Iterator[Violation]:
    for node in sources(manifest):
        missing = []
        if not described(node.get("source_description")):
            missing.append(f"source {node['source_name']!r}")
        if not described(node.get("description")):
            missing.append(f"table {node['name']!r}")
        missing += [
            f"column {name!r}" for name, column in node.get("columns", {}).items()
            if not described(column.get("description"))
        ]
        if missing:
            yield _violation(
                "source_documented",
                node,
                f"no description for {', '.join(missing)}",
                f"add a `description:` to each of them in {node['original_file_path']} "
                f"(replacing any `{PLACEHOLDER}` placeholder the draft left)",
            )


@rule("primary_key_tested", "every model's primary key is tested (primary_key, or unique+not_null)")
def check_primary_key_tested(manifest: Manifest) -> Iterator[Violation]:
    for node in models(manifest):
        key, origin = primary_key(node, manifest)
        target = _yaml_hint(node)
        if key is None:
            yield _violation(
                "primary_key_tested",
                node,
                "no primary key is known: the model has no columns in YAML and no "
                "config.meta.primary_key",
                f"list its columns in {target}, the primary key first, with "
                "`data_tests: [unique, not_null]` on it (or set config.meta.primary_key)",
            )
            continue
        missing = key_is_tested(manifest, node["unique_id"], key)
        if missing:
            label = key[0] if len(key) == 1 else f"({', '.join(key)})"
            where = (
                "the source declaration and run `dataops sources sync`"
                if layer(node) == "staging" else target
            )
            test = f"- primary_key: {{arguments: {{columns: [{', '.join(key)}]}}}}"
            yield _violation(
                "primary_key_tested",
                node,
                f"primary key {label!r} ({origin}) has no {' or '.join(missing)} test",
                f"add the model-level data test `{test}` (or, for one column, "
                f"`data_tests: [unique, not_null]` on column {label!r}) in {where}; if the "
                "key is other columns, set `config: {meta: {primary_key: <column or list>}}`",
            )


@rule("source_freshness", "every source table has a freshness SLA and a loaded_at_field")
def check_source_freshness(manifest: Manifest) -> Iterator[Violation]:
    for node in sources(manifest):
        freshness = node.get("freshness") or {}
        has_sla = any(
            (freshness.get(level) or {}).get("count") and (freshness.get(level) or {}).get("period")
            for level in ("warn_after", "error_after")
        )
        has_clock = bool(node.get("loaded_at_field") or node.get("loaded_at_query"))
        if not has_sla or not has_clock:
            missing = [text for ok, text in ((has_sla, "freshness warn_after/error_after"),
                                             (has_clock, "loaded_at_field")) if not ok]
            yield _violation(
                "source_freshness",
                node,
                f"no {' and no '.join(missing)}",
                f"in {node['original_file_path']}, under source {node['source_name']!r} "
                "(or the table), set `config: {loaded_at_field: _loaded_at, freshness: "
                "{warn_after: {count: 26, period: hour}, error_after: {count: 50, period: hour}}}`",
            )


@rule("public_mart_contract", "every public mart has an enforced contract")
def check_public_mart_contract(manifest: Manifest) -> Iterator[Violation]:
    for node in models(manifest):
        if layer(node) != "marts" or node.get("access") != "public":
            continue
        contract = node.get("config", {}).get("contract") or {}
        if not contract.get("enforced"):
            yield _violation(
                "public_mart_contract",
                node,
                "public mart without an enforced contract",
                f"in {_yaml_hint(node)} set `config: {{contract: {{enforced: true}}}}` and give "
                "every column a `data_type` (or make the model `access: protected`)",
            )


def run_rules(manifest: Manifest, only: list[str] | None = None) -> list[Violation]:
    """All violations of the (selected) rules, in rule then file order."""
    found: list[Violation] = []
    for name, registered in RULES.items():
        if only and name not in only:
            continue
        found.extend(sorted(registered.check(manifest), key=lambda v: (v.file, v.node)))
    return found
