{#-
    Schema change against the declaration, for monitored sources: in the latest measurement, a
    declared column missing from the raw table, a declared column with no value at all in the rows
    just delivered while it had values before (the column was dropped from the delivered files),
    or, for a table whose declared drift policy is `strict`, delivered rows carrying a column that
    is not declared. Under `additive` (the default) such a column is accepted drift: the
    schema_drift monitor reports it (warn), on the deliveries that carry it.
-#}
{% test schema_change(model, min_history=1) %}
{{ config(store_failures=true, severity='error') }}
{%- set strict = dataops_schema_drift_nodes('strict') %}
with

latest as (
    {{ dataops_latest_measurements(model) | indent(4) }}
),

latest_runs as (
    select distinct node_id, measured_at
    from latest
),

delivered as (
    select node_id, metric_value as rows_added
    from latest
    where metric_name = 'rows_added' and metric_value > 0
),

earlier_values as (
    select history.node_id, history.column_name, count(*) as measurements
    from {{ model }} as history
    inner join latest_runs
        on history.node_id = latest_runs.node_id
        and history.measured_at < latest_runs.measured_at
    where history.metric_name = 'non_null_count' and history.metric_value > 0
    group by 1, 2
),

dropped as (
    select latest.*
    from latest
    inner join delivered on latest.node_id = delivered.node_id
    inner join earlier_values
        on latest.node_id = earlier_values.node_id
        and latest.column_name = earlier_values.column_name
    where latest.metric_name = 'non_null_count'
        and latest.metric_value = 0
        and earlier_values.measurements >= {{ min_history }}
),

changes as (
    select * from latest where metric_name = 'column_missing'
    {%- if strict %}
    union all
    select * from latest
    where metric_name = 'column_undeclared' and node_id in ({{ strict | join(', ') }})
    {%- endif %}
    union all
    select * from dropped
),

{%- set reason -%}
source_name || '.' || table_name || '.' || column_name || ': '
|| case metric_name
    when 'column_missing' then 'declared column is missing from the raw table'
    when 'column_undeclared' then 'delivered rows carry a column that is not declared'
        || ' (schema_drift is strict)'
    else 'no value in any delivered row: the column was dropped from the files'
end
{%- endset %}

final as (
    {{ dataops_monitor_result('changes', {'reason': reason}, expected=false) | indent(4) }}
)

select * from final
{% endtest %}
