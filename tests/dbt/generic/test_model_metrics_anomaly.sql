{#-
    The monitors of a model with a `monitors` block (row count, and the declared column metrics),
    attached to the model itself: dbt runs it after the model is built and the model's post-hook
    (dataops_after_model_build) has measured it, so it judges this build's measurement. Same method as
    the source monitors (dataops_metric_anomalies): weekday seasonality and trend where the
    history shows them, tolerance from the history's own spread (at least `min_absolute_change`:
    a model rebuilt several times a day has a row count that moves in steps of whole rows).
-#}
{% test model_metrics_anomaly(model, sensitivity=4, training_days=28, min_history=7,
        min_absolute_change=1, min_relative_change=0.02, seasonality='auto', direction='both') %}
{#- The metric history lives in the DuckDB warehouse only (the platform source). -#}
{{ config(enabled=target.type == 'duckdb', **dataops_anomaly_test_config()) }}
{%- set name = model.identifier if model.identifier is defined else (model | string).split('.')[-1] | replace('"', '') -%}
{{ dataops_metric_anomalies(source('platform', 'metric_history'),
    ['row_count', 'null_rate', 'distinct_count', 'mean', 'min', 'max'], sensitivity, training_days,
    min_history, min_absolute_change, min_relative_change, seasonality, direction,
    metric_filter="lower(table_name) = " ~ dataops_literal(name | lower), table_kind='model') }}
{% endtest %}
