{#-
    Volume monitor over platform.metric_history: rows delivered to a monitored source (rows_added,
    in invocations that received rows; a model's row count is model_metrics_anomaly's), against
    the trailing window: per weekday where the history shows a weekly pattern (the sample shop sells 30% more
    at weekends), along its trend, with a tolerance from the window's own spread.
    See dataops_metric_anomalies for the method and the arguments.
-#}
{% test volume_anomaly(model, sensitivity=4, training_days=28, min_history=7, min_absolute_change=10,
        min_relative_change=0.05, seasonality='auto', direction='both') %}
{{ config(**dataops_anomaly_test_config()) }}
{{ dataops_metric_anomalies(model, ['rows_added'], sensitivity, training_days, min_history,
    min_absolute_change, min_relative_change, seasonality, direction,
    metric_filter="metric_name = 'rows_added' and metric_value > 0", table_kind='source') }}
{% endtest %}
