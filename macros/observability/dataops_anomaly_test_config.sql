{#-
    The config of every metric anomaly test (volume, null_rate, distribution, model_metrics):
    store every judged measurement with its band (dataops_metric_anomalies; on-run-end reads
    them), warn, and count the anomalous ones. For `config(**dataops_anomaly_test_config())`.
-#}
{% macro dataops_anomaly_test_config() -%}
    {{ return({
        'store_failures': true,
        'severity': 'warn',
        'fail_calc': 'count(case when is_anomaly then 1 end)',
    }) }}
{%- endmacro %}
