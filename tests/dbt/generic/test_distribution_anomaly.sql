{#-
    Numeric distribution drift: mean, min and max of monitored numeric columns (as declared in the
    `monitors` block) against the trailing window.
-#}
{% test distribution_anomaly(model, sensitivity=4, training_days=28, min_history=7, min_absolute_change=0,
        min_relative_change=0.02, seasonality='auto', direction='both') %}
{{ config(**dataops_anomaly_test_config()) }}
{{ dataops_metric_anomalies(model, ['mean', 'min', 'max'], sensitivity, training_days, min_history,
    min_absolute_change, min_relative_change, seasonality, direction, table_kind='source') }}
{% endtest %}
