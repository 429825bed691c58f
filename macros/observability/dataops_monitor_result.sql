{#-
    The row every monitor stores for a finding: the contract platform.events (anomaly.detected),
    incidents and the dashboard read from a monitor's stored failures. One owner for its columns
    and their order:
        node_id, source_name, table_name, column_name, metric_name, metric_value,
        expected_value, tolerance, [lower_bound, upper_bound, is_anomaly,]
        measured_at, batch_id, file_hash, reason
    A select statement from `relation` (a CTE with the measurement's columns), to be used as a CTE
    body; the caller may add a where clause. Each column is the relation's column of that name
    unless `columns` gives an SQL expression for it (e.g. the reason). `expected=false`: a finding
    judged against no expected value (a schema change), expected_value and tolerance are null.
    `band` adds the band a metric monitor judged with (dataops_metric_anomalies; on-run-end
    reads it).
-#}
{% macro dataops_monitor_result(relation, columns={}, band=false, expected=true) -%}
    {%- set names = ['node_id', 'source_name', 'table_name', 'column_name', 'metric_name',
        'metric_value', 'expected_value', 'tolerance']
        + (['lower_bound', 'upper_bound', 'is_anomaly'] if band else [])
        + ['measured_at', 'batch_id', 'file_hash', 'reason'] -%}
    {%- if columns is not mapping -%}
        {{ exceptions.raise_compiler_error("dataops_monitor_result from " ~ relation
            ~ ": columns is '" ~ columns ~ "': expected a mapping of column name to SQL expression.") }}
    {%- endif -%}
    {%- if not expected -%}
        {%- set columns = dict(columns, expected_value='cast(null as double)',
            tolerance='cast(null as double)') -%}
    {%- endif -%}
    {%- for name in columns if name not in names -%}
        {{ exceptions.raise_compiler_error("dataops_monitor_result from " ~ relation ~ ": '" ~ name
            ~ "' is not a column of a monitor's result row; expected one of "
            ~ names | join(', ') ~ ".") }}
    {%- endfor -%}
select
    {%- for name in names %}
    {{ columns[name] ~ ' as ' ~ name if name in columns else name }}{{ ',' if not loop.last }}
    {%- endfor %}
from {{ relation }}
{%- endmacro %}
