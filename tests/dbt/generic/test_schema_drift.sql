{#-
    Accepted schema drift, judged by the declared drift policy: for a monitored source whose
    policy is `additive` (the default), the latest delivery carries a column that is not declared.
    Ingestion loaded it (a `file.schema_drift` event names the file); this warns once per delivery
    that carries the column, so later deliveries without it are quiet although the raw table keeps
    the column. Under `strict` the same finding is a schema_change failure.
-#}
{% test schema_drift(model) %}
{{ config(store_failures=true, severity='warn') }}
{%- set additive = [] -%}
{%- for spec in dataops_monitored_tables() if spec.schema and spec.schema_drift == 'additive' -%}
    {%- do additive.append(dataops_literal(spec.node_id)) -%}
{%- endfor %}
with

latest as (
    {{ dataops_latest_measurements(model) | indent(4) }}
),

added as (
    select *
    from latest
    where metric_name = 'column_undeclared'
        and node_id in ({{ (additive or ["''"]) | join(', ') }})
),

final as (
    select
        node_id,
        source_name,
        table_name,
        column_name,
        metric_name,
        metric_value,
        cast(null as double) as expected_value,
        cast(null as double) as tolerance,
        measured_at,
        batch_id,
        file_hash,
        source_name || '.' || table_name || '.' || column_name || ': delivered in '
        || cast(cast(metric_value as bigint) as varchar)
        || ' rows but not declared (accepted: schema_drift is additive); declare it to stage it'
        as reason
    from added
)

select * from final
{% endtest %}
