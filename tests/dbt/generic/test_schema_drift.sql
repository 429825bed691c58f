{#-
    Accepted schema drift, judged by the declared drift policy: for a monitored source whose
    policy is `additive` (the default), the latest delivery carries a column that is not declared.
    Ingestion loaded it (a `file.schema_drift` event names the file); this warns once per delivery
    that carries the column, so later deliveries without it are quiet although the raw table keeps
    the column. Under `strict` the same finding is a schema_change failure.
-#}
{% test schema_drift(model) %}
{{ config(store_failures=true, severity='warn') }}
{%- set additive = dataops_schema_drift_nodes('additive') %}
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

{%- set reason -%}
source_name || '.' || table_name || '.' || column_name || ': delivered in '
|| cast(cast(metric_value as bigint) as varchar)
|| ' rows but not declared (accepted: schema_drift is additive); declare it to stage it'
{%- endset %}

final as (
    {{ dataops_monitor_result('added', {'reason': reason}, expected=false) | indent(4) }}
)

select * from final
{% endtest %}
