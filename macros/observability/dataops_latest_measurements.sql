{#-
    The rows of each monitored table's latest measurement in the metric history (every column and
    metric measured at its newest measured_at): what the monitors judge. One owner for the anomaly
    monitors (dataops_metric_anomalies) and the schema tests (schema_change, schema_drift).
    A select statement, to be used as a CTE body.
-#}
{% macro dataops_latest_measurements(history) -%}
select history.*
from {{ history }} as history
inner join (
    select node_id, max(measured_at) as measured_at
    from {{ history }}
    group by 1
) as latest_runs
    on history.node_id = latest_runs.node_id
    and history.measured_at = latest_runs.measured_at
{%- endmacro %}
