{#-
    Schema change against the declaration, for sources with `schema: true` in `monitors`: in the
    latest measurement, a declared column missing from the raw table, a raw column that is not
    declared, or a declared column with no value at all in the rows just delivered while it had
    values before (the column was dropped from the delivered files).
-#}
{% test schema_change(model, min_history=1) %}
{{ config(store_failures=true, severity='error') }}
with

latest_runs as (
    select node_id, max(measured_at) as measured_at
    from {{ model }}
    group by 1
),

latest as (
    select history.*
    from {{ model }} as history
    inner join latest_runs
        on history.node_id = latest_runs.node_id
        and history.measured_at = latest_runs.measured_at
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
    select * from latest where metric_name in ('column_missing', 'column_undeclared')
    union all
    select * from dropped
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
        source_name || '.' || table_name || '.' || column_name || ': '
        || case metric_name
            when 'column_missing' then 'declared column is missing from the raw table'
            when 'column_undeclared' then 'raw table has a column that is not declared'
            else 'no value in any delivered row: the column was dropped from the files'
        end as reason
    from changes
)

select * from final
{% endtest %}
