{#-
    One set-based insert into platform.metric_history measuring the given monitored tables (from
    dataops_monitored_tables). A source table is measured on the rows that arrived since its last
    measurement (its loaded_at_field above the stored watermark): rows_added, column metrics and,
    with `schema`, the declared columns' presence and the undeclared columns the delivered rows
    carry; plus its total row_count and freshness lag
    against the measurement time. A model is measured whole (row_count and column metrics).
    The stored watermarks are read before the insert is rendered and compared as timestamp literals
    (`_loaded_at > '...'`), so the scans skip every row group loaded before them (zone maps)
    instead of reading each raw table whole: the same rows as `epoch_us(_loaded_at) > watermark`.
-#}
{% macro dataops_collect_metrics(specs) -%}
    {%- if not execute or specs | length == 0 -%}{{ return('') }}{%- endif -%}
    {#- specs whose relation does not exist yet (nothing loaded) are skipped. -#}
    {%- set actual_types = {} -%}
    {%- set actual = dataops_actual_columns(specs, actual_types) -%}
    {%- set existing = [] -%}
    {%- for spec in specs if actual.get(spec.relation | lower) -%}
        {%- do existing.append(spec) -%}
    {%- endfor -%}
    {%- if existing | length == 0 -%}{{ return('') }}{%- endif -%}
    {%- set watermarks = dataops_source_watermarks(existing) -%}
    {%- set float = dataops_type_double() -%}
    {%- set ctes = [] -%}
    {%- set selects = [] -%}
    {%- for spec in existing -%}
        {%- set i = loop.index -%}
        {%- set ident = dataops_literal(spec.node_id) ~ " as node_id, " ~ dataops_literal(spec.kind)
            ~ " as table_kind, " ~ dataops_literal(spec.source_name) ~ " as source_name, "
            ~ dataops_literal(spec.table_name) ~ " as table_name" -%}
        {%- set present = actual.get(spec.relation | lower) -%}
        {%- set measured_present = actual.get((spec.measured_relation or '') | lower, []) -%}
        {%- set loaded_at = adapter.quote(spec.loaded_at_field) if spec.loaded_at_field else none -%}
        {%- set watermark = watermarks.get(spec.node_id) -%}
        {%- set loaded_at_type = actual_types.get(spec.relation | lower, {}).get(spec.loaded_at_field | lower)
            if loaded_at else none -%}
        {%- if spec.kind == 'source' and loaded_at and watermark is number
              and (loaded_at_type or '') | lower == 'timestamp' -%}
            {#- epoch_us(x) > w exactly when x > the timestamp w microseconds after 1970 (a naive
                timestamp is its own UTC instant; w is a whole number of microseconds). -#}
            {%- set since = loaded_at ~ " > cast('" ~ (modules.datetime.datetime(1970, 1, 1)
                + modules.datetime.timedelta(microseconds=watermark | int)).strftime('%Y-%m-%d %H:%M:%S.%f')
                ~ "' as timestamp)" -%}
        {%- elif spec.kind == 'source' and loaded_at -%}
            {%- set since = dataops_epoch_us(loaded_at) ~ " > coalesce((select max(metric_value) from "
                ~ "platform.metric_history where node_id = " ~ dataops_literal(spec.node_id)
                ~ " and metric_name = 'loaded_at_max'), -1)" -%}
        {%- else -%}
            {%- set since = "1 = 1" -%}
        {%- endif -%}
        {#- The raw table: volume, watermark, lineage ids and the declared columns' presence. -#}
        {%- set aggregates = ["count(*) as rows_added"] -%}
        {%- set metrics = [] -%}
        {%- if '_batch_id' in present and '_file_hash' in present -%}
            {%- do aggregates.append("max(_batch_id) as batch_id") -%}
            {%- do aggregates.append("case when count(distinct _file_hash) = 1 then max(_file_hash) end as file_hash") -%}
        {%- else -%}
            {%- do aggregates.append("cast(null as varchar) as batch_id") -%}
            {%- do aggregates.append("cast(null as varchar) as file_hash") -%}
        {%- endif -%}
        {%- if loaded_at -%}
            {%- do aggregates.append("max(" ~ dataops_epoch_us(loaded_at) ~ ") as loaded_at_max") -%}
            {%- do metrics.append((none, 'loaded_at_max', 'loaded_at_max')) -%}
        {%- endif -%}
        {%- if spec.kind == 'source' -%}
            {%- do metrics.append((none, 'rows_added', 'rows_added')) -%}
        {%- endif -%}
        {%- if spec.schema -%}
            {%- for column in spec.declared if column.name | lower in present -%}
                {%- do aggregates.append("count(" ~ adapter.quote(column.name) ~ ") as n" ~ loop.index) -%}
                {%- do metrics.append((column.name, 'non_null_count', 'n' ~ loop.index)) -%}
            {%- endfor -%}
            {%- set declared_lower = spec.declared | map(attribute='name') | map('lower') | list -%}
            {%- for name in present if name not in declared_lower and not name.startswith('_') -%}
                {%- do aggregates.append("count(" ~ adapter.quote(name) ~ ") as u" ~ loop.index) -%}
            {%- endfor -%}
        {%- endif -%}
        {%- do ctes.append("raw_" ~ i ~ " as (select " ~ aggregates | join(", ") ~ " from "
            ~ spec.relation ~ " where " ~ since ~ ")") -%}
        {%- set total = ["count(*) as row_count"] -%}
        {%- if loaded_at -%}
            {%- do total.append("max(" ~ loaded_at ~ ") as last_loaded_at") -%}
        {%- endif -%}
        {%- do ctes.append("total_" ~ i ~ " as (select " ~ total | join(", ") ~ " from " ~ spec.relation ~ ")") -%}
        {%- do selects.append("select " ~ ident ~ ", null as column_name, 'row_count' as metric_name, "
            ~ "cast(row_count as " ~ float ~ ") as metric_value, batch_id, file_hash from total_" ~ i
            ~ " cross join raw_" ~ i) -%}
        {%- if spec.freshness and loaded_at -%}
            {%- do selects.append("select " ~ ident ~ ", null, 'freshness_lag_hours', cast(("
                ~ dataops_epoch_us(dataops_as_of()) ~ " - " ~ dataops_epoch_us('last_loaded_at')
                ~ ") / 3600000000.0 as " ~ float ~ "), batch_id, file_hash from total_" ~ i
                ~ " cross join raw_" ~ i) -%}
        {%- endif -%}
        {%- for column_name, metric, alias in metrics -%}
            {%- do selects.append("select " ~ ident ~ ", " ~ dataops_literal(column_name) ~ ", '"
                ~ metric ~ "', cast(" ~ alias ~ " as " ~ float ~ "), batch_id, file_hash from raw_" ~ i) -%}
        {%- endfor -%}
        {%- if spec.schema -%}
            {%- set declared_names = spec.declared | map(attribute='name') | map('lower') | list -%}
            {#- A column staged from an expression is no raw column: its absence is no change. -#}
            {%- for column in spec.declared if column.name | lower not in present
                and not column.expression -%}
                {%- do selects.append("select " ~ ident ~ ", " ~ dataops_literal(column.name)
                    ~ ", 'column_missing', 1.0, batch_id, file_hash from raw_" ~ i) -%}
            {%- endfor -%}
            {#- An undeclared column counts only on the deliveries that carry it (a value in a
                delivered row): once added to the raw table by additive drift it stays there. -#}
            {%- for name in present if name not in declared_names and not name.startswith('_') -%}
                {%- do selects.append("select " ~ ident ~ ", " ~ dataops_literal(name)
                    ~ ", 'column_undeclared', cast(u" ~ loop.index ~ " as " ~ float
                    ~ "), batch_id, file_hash from raw_" ~ i ~ " where u" ~ loop.index ~ " > 0") -%}
            {%- endfor -%}
        {%- endif -%}
        {#- Column metrics, on the staging model (staged names and types) or the model itself. -#}
        {%- set column_aggregates = [] -%}
        {%- set column_metrics = [] -%}
        {%- set staging = graph.nodes.get('model.' ~ project_name ~ '.stg_' ~ spec.source_name ~ '__'
            ~ spec.table_name) if spec.kind == 'source' else none -%}
        {%- set generated = staging and 'macro.' ~ project_name ~ '.stage_source' in staging.depends_on.macros -%}
        {#- A generated staging model is measured from its SQL: its columns are the declared ones,
            so the first delivery is measured too, before the staging relation exists. -#}
        {%- for name, wanted in spec.columns.items() if generated or name | lower in measured_present -%}
            {%- set quoted = adapter.quote(name) -%}
            {%- set c = loop.index -%}
            {%- for metric in wanted -%}
                {%- set alias = 'c' ~ c ~ '_' ~ metric -%}
                {%- if metric == 'null_rate' -%}
                    {%- set expression = "avg(case when " ~ quoted ~ " is null then 1.0 else 0.0 end)" -%}
                {%- elif metric == 'distinct_count' -%}
                    {%- set expression = "count(distinct " ~ quoted ~ ")" -%}
                {%- else -%}
                    {%- set expression = {'mean': 'avg', 'min': 'min', 'max': 'max'}[metric]
                        ~ "(cast(" ~ quoted ~ " as " ~ float ~ "))" -%}
                {%- endif -%}
                {%- do column_aggregates.append(expression ~ " as " ~ alias) -%}
                {%- do column_metrics.append((name, metric, alias)) -%}
            {%- endfor -%}
        {%- endfor -%}
        {%- if column_metrics -%}
            {%- set measured_since = since if generated
                or (spec.loaded_at_field or '') | lower in measured_present else "1 = 1" -%}
            {#- A staging model generated by stage_source is measured from its SQL, limited to the
                keys delivered since the watermark: the same rows as the staged relation, without
                ranking the whole raw table, and current although the staging table is rebuilt
                only later in this invocation. -#}
            {%- set measured_from = spec.measured_relation -%}
            {%- if generated -%}
                {%- set measured_from = "(" ~ stage_source(spec.source_name, spec.table_name,
                    changed_since=measured_since if measured_since != "1 = 1" else none) ~ ") as staged" -%}
            {%- endif -%}
            {%- do ctes.append("columns_" ~ i ~ " as (select " ~ column_aggregates | join(", ")
                ~ " from " ~ measured_from ~ " where " ~ measured_since ~ ")") -%}
            {%- for column_name, metric, alias in column_metrics -%}
                {%- do selects.append("select " ~ ident ~ ", " ~ dataops_literal(column_name) ~ ", '"
                    ~ metric ~ "', cast(" ~ alias ~ " as " ~ float ~ "), batch_id, file_hash from columns_"
                    ~ i ~ " cross join raw_" ~ i) -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endfor -%}
insert into platform.metric_history (
    measured_at, dbt_invocation_id, node_id, table_kind, source_name, table_name,
    column_name, metric_name, metric_value, batch_id, file_hash
)
with
{{ ctes | join(",\n") }},
measured as (
{{ selects | join("\nunion all\n") }}
)
select {{ dataops_as_of() }}, '{{ invocation_id }}', * from measured;
{%- endmacro %}


{#- Lower-cased column names of each relation, read once from information_schema; `types`, when
    given, is filled with {relation: {column: lower-cased data type}}. -#}
{% macro dataops_actual_columns(specs, types=none) -%}
    {%- set wanted = [] -%}
    {%- for spec in specs -%}
        {%- for relation in [spec.relation, spec.measured_relation] if relation -%}
            {%- set parts = relation.replace('"', '').split('.') -%}
            {%- do wanted.append("(" ~ dataops_literal(parts[-2] | lower) ~ ", "
                ~ dataops_literal(parts[-1] | lower) ~ ")") -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- set query -%}
        select lower(table_catalog), lower(table_schema), lower(table_name), lower(column_name),
            lower(data_type)
        from information_schema.columns
        where (lower(table_schema), lower(table_name)) in ({{ wanted | join(', ') }})
        order by ordinal_position
    {%- endset -%}
    {%- set found = {} -%}
    {%- for row in run_query(query).rows -%}
        {%- set key = ('"' ~ row[0] ~ '"."' ~ row[1] ~ '"."' ~ row[2] ~ '"') -%}
        {%- do found.setdefault(key, []).append(row[3]) -%}
        {%- if types is not none -%}
            {%- do types.setdefault(key, {}).update({row[3]: row[4]}) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(found) }}
{%- endmacro %}


{#- The stored watermark (`loaded_at_max`, microseconds since 1970) of each source spec with a
    loaded_at_field, {node_id: value}; empty before platform.metric_history exists. -#}
{% macro dataops_source_watermarks(specs) -%}
    {%- set node_ids = [] -%}
    {%- for spec in specs if spec.kind == 'source' and spec.loaded_at_field -%}
        {%- do node_ids.append(dataops_literal(spec.node_id)) -%}
    {%- endfor -%}
    {%- set found = {} -%}
    {%- if node_ids | length == 0 -%}{{ return(found) }}{%- endif -%}
    {%- set exists_query -%}
        select count(*) from information_schema.tables
        where table_catalog = current_database() and table_schema = 'platform'
            and table_name = 'metric_history'
    {%- endset -%}
    {%- if run_query(exists_query).rows[0][0] == 0 -%}{{ return(found) }}{%- endif -%}
    {%- set query -%}
        select node_id, max(metric_value) from platform.metric_history
        where metric_name = 'loaded_at_max' and node_id in ({{ node_ids | join(', ') }})
        group by 1
    {%- endset -%}
    {%- for row in run_query(query).rows if row[1] is not none -%}
        {%- do found.update({row[0]: row[1]}) -%}
    {%- endfor -%}
    {{ return(found) }}
{%- endmacro %}


{#- Microseconds since 1970 of a timestamp expression (used for watermarks and lags). -#}
{% macro dataops_epoch_us(expression) -%}
    {{ return(adapter.dispatch('dataops_epoch_us', 'dataops')(expression)) }}
{%- endmacro %}

{% macro default__dataops_epoch_us(expression) -%}
    (extract(epoch from {{ expression }}) * 1000000)
{%- endmacro %}

{% macro duckdb__dataops_epoch_us(expression) -%}
    epoch_us({{ expression }})
{%- endmacro %}


{#- A 64-bit float type (dbt.type_float() is 32-bit on DuckDB: too coarse for watermarks). -#}
{% macro dataops_type_double() -%}
    {{ return(adapter.dispatch('dataops_type_double', 'dataops')()) }}
{%- endmacro %}

{% macro default__dataops_type_double() -%}
    double precision
{%- endmacro %}
