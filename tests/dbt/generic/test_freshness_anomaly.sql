{#-
    Freshness monitor: a monitored source's lag (measurement time minus the newest loaded_at_field)
    fails when it exceeds the source's declared freshness SLA (`sla`: error_after or warn_after)
    or when it rises above its trailing window (data later than usual, before the SLA is hit).
-#}
{% test freshness_anomaly(model, sla='error_after', sensitivity=4, training_days=14, min_history=5,
        min_absolute_change=6, min_relative_change=0.5) %}
{{ config(store_failures=true, severity='warn') }}
{%- if sla not in ('error_after', 'warn_after') -%}
    {{ exceptions.raise_compiler_error("freshness_anomaly on " ~ model ~ ": sla is '" ~ sla
        ~ "': expected error_after or warn_after.") }}
{%- endif -%}
{%- set slas = [] -%}
{%- for spec in dataops_monitored_tables() if spec.freshness -%}
    {%- set hours = spec.sla_error_hours if sla == 'error_after' else spec.sla_warn_hours -%}
    {%- if hours is not none -%}
        {%- do slas.append("select " ~ dataops_literal(spec.node_id) ~ " as node_id, "
            ~ hours ~ " as sla_hours") -%}
    {%- endif -%}
{%- endfor %}
with

judged as (
    {{ dataops_metric_anomalies(model, ['freshness_lag_hours'], sensitivity, training_days, min_history,
        min_absolute_change, min_relative_change, 'none', 'up') | indent(4) }}
),

anomalies as (
    {{ dataops_monitor_result('judged') | indent(4) }}
    where is_anomaly
),

{% if slas %}
slas as (
    {{ slas | join("\n    union all\n    ") }}
),

latest as (
    {{ dataops_latest_measurements(model) | indent(4) }}
),

breaches as (
    select
        lags.*,
        slas.sla_hours
    from latest as lags
    inner join slas on lags.node_id = slas.node_id
    where lags.metric_name = 'freshness_lag_hours'
        and lags.metric_value > slas.sla_hours
),

{%- set reason -%}
source_name || '.' || table_name || ': no new data for '
|| cast(round(metric_value, 1) as varchar) || ' hours, over the {{ sla }} SLA of '
|| cast(sla_hours as varchar) || ' hours'
{%- endset %}

sla_breaches as (
    {{ dataops_monitor_result('breaches', {
        'expected_value': 'sla_hours',
        'tolerance': '0.0',
        'reason': reason,
    }) | indent(4) }}
),

{% endif %}

final as (
    select * from anomalies
    {% if slas %}
    union all
    select * from sla_breaches
    where node_id not in (select node_id from anomalies)
    {% endif %}
)

select * from final
{% endtest %}
