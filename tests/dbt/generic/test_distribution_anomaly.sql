{#-
    Numeric distribution drift: mean, min and max of monitored numeric columns (as declared in the
    `monitors` block) against the trailing window.
-#}
{% test distribution_anomaly(model, sensitivity=4, training_days=14, min_history=5, min_absolute_change=0,
        min_relative_change=0.25, direction='both') %}
{{ config(store_failures=true, severity='warn') }}
{{ dataops_metric_anomalies(model, ['mean', 'min', 'max'], sensitivity, training_days, min_history,
    min_absolute_change, min_relative_change, 'none', direction) }}
{% endtest %}
