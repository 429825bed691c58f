{#-
    Null-rate drift: the share of nulls in a monitored column (declared `null_rate` in the
    `monitors` block) of the rows delivered since the last measurement, against the trailing window.
-#}
{% test null_rate_anomaly(model, sensitivity=4, training_days=28, min_history=7, min_absolute_change=0.02,
        min_relative_change=0, seasonality='auto', direction='both') %}
{{ config(**dataops_anomaly_test_config()) }}
{{ dataops_metric_anomalies(model, ['null_rate'], sensitivity, training_days, min_history,
    min_absolute_change, min_relative_change, seasonality, direction, table_kind='source') }}
{% endtest %}
