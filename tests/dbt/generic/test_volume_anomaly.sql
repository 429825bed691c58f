{#-
    Volume monitor over platform.metric_history: rows delivered to a monitored source (rows_added,
    in invocations that received rows) or a monitored model's row count, against the trailing
    window (same weekday by default: the sample shop sells 30% more at weekends).
    See dataops_metric_anomalies for the method and the arguments.
-#}
{% test volume_anomaly(model, sensitivity=4, training_days=28, min_history=3, min_absolute_change=10,
        min_relative_change=0.2, seasonality='day_of_week', direction='both') %}
{{ config(store_failures=true, severity='warn') }}
{{ dataops_metric_anomalies(model, ['rows_added', 'row_count'], sensitivity, training_days, min_history,
    min_absolute_change, min_relative_change, seasonality, direction,
    metric_filter="((table_kind = 'source' and metric_name = 'rows_added' and metric_value > 0)"
        ~ " or (table_kind = 'model' and metric_name = 'row_count'))") }}
{% endtest %}
