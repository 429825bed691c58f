{#-
    Rows of the metric history whose latest measurement is anomalous, judged robustly against a
    trailing training window that excludes the detection period:
      detection period = each monitored table's latest measurement (this invocation, for sources);
      training         = earlier measurements of the same table/column/metric within
                         `training_days` before it (same weekday only, with
                         seasonality='day_of_week');
      anomalous when   |value - median| > max(sensitivity * 1.4826 * MAD,
                                              min_absolute_change, min_relative_change * |median|)
                       and the training holds at least `min_history` measurements.
    `direction`: both, up or down. `metric_filter` restricts which values count (e.g. > 0).
    Output columns (stored as failures and turned into `anomaly.detected` events): node_id,
    source_name, table_name, column_name, metric_name, metric_value, expected_value, tolerance,
    measured_at, batch_id, file_hash, reason.
-#}
{% macro dataops_metric_anomalies(
        history, metric_names, sensitivity, training_days, min_history, min_absolute_change,
        min_relative_change, seasonality='none', direction='both', metric_filter=none,
        table_kind=none) -%}
    {%- set where = "Anomaly test on " ~ history ~ ": " -%}
    {%- for name, value in [('sensitivity', sensitivity), ('training_days', training_days),
            ('min_history', min_history), ('min_absolute_change', min_absolute_change),
            ('min_relative_change', min_relative_change)] -%}
        {%- if value is not number or value < 0 -%}
            {{ exceptions.raise_compiler_error(where ~ name ~ " is '" ~ value
                ~ "': expected a number of at least 0.") }}
        {%- endif -%}
    {%- endfor -%}
    {%- if seasonality not in ('none', 'day_of_week') -%}
        {{ exceptions.raise_compiler_error(where ~ "seasonality is '" ~ seasonality
            ~ "': expected none or day_of_week.") }}
    {%- endif -%}
    {%- if direction not in ('both', 'up', 'down') -%}
        {{ exceptions.raise_compiler_error(where ~ "direction is '" ~ direction
            ~ "': expected both, up or down.") }}
    {%- endif -%}
    {%- set quoted_names = [] -%}
    {%- for name in metric_names -%}{%- do quoted_names.append(dataops_literal(name)) -%}{%- endfor -%}
with

latest_runs as (
    select node_id, max(measured_at) as measured_at
    from {{ history }}
    group by 1
),

series as (
    select *
    from {{ history }}
    where metric_name in ({{ quoted_names | join(', ') }})
        and metric_value is not null
        {% if metric_filter %}and {{ metric_filter }}{% endif %}
        {% if table_kind %}and table_kind = {{ dataops_literal(table_kind) }}{% endif %}
),

detection as (
    select series.*
    from series
    inner join latest_runs
        on series.node_id = latest_runs.node_id
        and series.measured_at = latest_runs.measured_at
),

training as (
    select
        detection.node_id,
        detection.column_name,
        detection.metric_name,
        series.metric_value
    from detection
    inner join series
        on series.node_id = detection.node_id
        and coalesce(series.column_name, '') = coalesce(detection.column_name, '')
        and series.metric_name = detection.metric_name
        and series.measured_at < detection.measured_at
        and series.measured_at >= detection.measured_at - interval '{{ training_days }} days'
        {%- if seasonality == 'day_of_week' %}
        and extract(dow from series.measured_at) = extract(dow from detection.measured_at)
        {%- endif %}
),

medians as (
    select
        node_id,
        column_name,
        metric_name,
        median(metric_value) as expected_value,
        count(*) as training_count
    from training
    group by 1, 2, 3
),

deviations as (
    select
        training.node_id,
        training.column_name,
        training.metric_name,
        median(abs(training.metric_value - medians.expected_value)) as mad
    from training
    inner join medians
        on training.node_id = medians.node_id
        and coalesce(training.column_name, '') = coalesce(medians.column_name, '')
        and training.metric_name = medians.metric_name
    group by 1, 2, 3
),

scored as (
    select
        detection.*,
        medians.expected_value,
        medians.training_count,
        greatest(
            {{ sensitivity }} * 1.4826 * deviations.mad,
            {{ min_absolute_change }},
            {{ min_relative_change }} * abs(medians.expected_value)
        ) as tolerance
    from detection
    inner join medians
        on detection.node_id = medians.node_id
        and coalesce(detection.column_name, '') = coalesce(medians.column_name, '')
        and detection.metric_name = medians.metric_name
    inner join deviations
        on detection.node_id = deviations.node_id
        and coalesce(detection.column_name, '') = coalesce(deviations.column_name, '')
        and detection.metric_name = deviations.metric_name
    where medians.training_count >= {{ min_history }}
),

final as (
    select
        node_id,
        source_name,
        table_name,
        column_name,
        metric_name,
        metric_value,
        expected_value,
        tolerance,
        measured_at,
        batch_id,
        file_hash,
        coalesce(source_name || '.', '') || table_name
        || coalesce('.' || column_name, '') || ': ' || metric_name || ' is '
        || cast(round(metric_value, 4) as varchar) || ', expected '
        || cast(round(expected_value, 4) as varchar) || ' +/- '
        || cast(round(tolerance, 4) as varchar)
        || ' (median of ' || cast(training_count as varchar) || ' earlier measurements)' as reason
    from scored
    where
        {% if direction == 'up' -%} metric_value - expected_value > tolerance
        {%- elif direction == 'down' -%} expected_value - metric_value > tolerance
        {%- else -%} abs(metric_value - expected_value) > tolerance
        {%- endif %}
)

select * from final
{%- endmacro %}
