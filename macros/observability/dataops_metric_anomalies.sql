{#-
    Each monitored series' latest measurement, judged against a trailing training window that excludes the detection period; the tolerance comes from the history's
    own spread, not from a fixed share of the value:
      detection period = each monitored table's latest measurement (this invocation, for sources);
      training         = earlier measurements of the same table/column/metric within
                         `training_days` before it;
      season           = the weekday, when the history shows a weekly pattern
                         (seasonality='auto': at least 3 earlier measurements on the detection's
                         weekday and the spread around the weekday medians under half the spread
                         around the overall median; 'day_of_week' forces it, 'none' never);
      trend            = the Theil-Sen slope (median of the pairwise slopes within a season) when
                         `trend`, so a growing series is not judged against its past level;
      expected         = median of the season's training values carried along the trend to the
                         detection time;
      spread (sigma)   = 1.4826 * the median out-of-sample deviation: each training value against
                         the median of the other values of its season (what the detection does
                         with a new value; a weekday median of 3-4 values fits its own values too
                         closely to measure their spread), and without a season at least
                         (p90 - p10) / 2.563 (a two-level series, e.g. weekdays and weekends seen
                         too briefly to tell, has a MAD of 0);
      anomalous when   |value - expected| > max(sensitivity * sigma, min_absolute_change,
                                                min_relative_change * |expected|)
                       and the training holds at least `min_history` measurements.
    `direction`: both, up or down (the other bound is null). `metric_filter` restricts which
    values count (e.g. > 0).
    One row per judged measurement (the band the monitor judged it with, anomalous or not): a
    monitor's result row with its band (dataops_monitor_result: node_id, ..., tolerance,
    lower_bound, upper_bound, is_anomaly, measured_at, batch_id, file_hash, reason).
    The tests count `is_anomaly` (dataops_anomaly_test_config) and store every row; on-run-end
    turns the anomalous ones into `anomaly.detected` events and writes every row's band into
    platform.metric_history (dataops_record_bands), where the dashboard reads it.
-#}
{% macro dataops_metric_anomalies(
        history, metric_names, sensitivity, training_days, min_history, min_absolute_change,
        min_relative_change, seasonality='auto', direction='both', metric_filter=none,
        table_kind=none, trend=true) -%}
    {%- set where = "Anomaly test on " ~ history ~ ": " -%}
    {%- for name, value in [('sensitivity', sensitivity), ('training_days', training_days),
            ('min_history', min_history), ('min_absolute_change', min_absolute_change),
            ('min_relative_change', min_relative_change)] -%}
        {%- if value is not number or value is sameas true or value is sameas false or value < 0 -%}
            {{ exceptions.raise_compiler_error(where ~ name ~ " is '" ~ value
                ~ "': expected a number of at least 0.") }}
        {%- endif -%}
    {%- endfor -%}
    {%- if seasonality not in ('auto', 'none', 'day_of_week') -%}
        {{ exceptions.raise_compiler_error(where ~ "seasonality is '" ~ seasonality
            ~ "': expected auto, none or day_of_week.") }}
    {%- endif -%}
    {%- if direction not in ('both', 'up', 'down') -%}
        {{ exceptions.raise_compiler_error(where ~ "direction is '" ~ direction
            ~ "': expected both, up or down.") }}
    {%- endif -%}
    {%- if trend is not sameas true and trend is not sameas false -%}
        {{ exceptions.raise_compiler_error(where ~ "trend is '" ~ trend ~ "': expected true or false.") }}
    {%- endif -%}
    {%- set quoted_names = [] -%}
    {%- for name in metric_names -%}{%- do quoted_names.append(dataops_literal(name)) -%}{%- endfor -%}
    {%- set series_key = "node_id || '|' || coalesce(column_name, '') || '|' || metric_name" -%}
    {#- The measurement's own columns (not the band a monitor recorded on it). -#}
    {%- set measurement = "node_id, table_kind, source_name, table_name, column_name, metric_name, "
        ~ "metric_value, measured_at, batch_id, file_hash" -%}
    {%- set judged = "metric_name in (" ~ quoted_names | join(', ') ~ ") and metric_value is not null"
        ~ (" and " ~ metric_filter if metric_filter else "")
        ~ (" and table_kind = " ~ dataops_literal(table_kind) if table_kind else "") -%}
with

series as (
    select
        {{ measurement }},
        {{ series_key }} as series_key
    from {{ history }}
    where {{ judged }}
),

detection as (
    select
        {{ measurement }},
        {{ series_key }} as series_key
    from ({{ dataops_latest_measurements(history) | indent(8) }}) as latest
    where {{ judged }}
),

training as (
    select
        detection.series_key,
        series.metric_value,
        ({{ dataops_epoch_us('detection.measured_at') }} - {{ dataops_epoch_us('series.measured_at') }})
        / 86400000000.0 as age_days,
        extract(isodow from series.measured_at) as weekday,
        extract(isodow from series.measured_at)
        = extract(isodow from detection.measured_at) as is_same_weekday
    from detection
    inner join series
        on detection.series_key = series.series_key
        and series.measured_at < detection.measured_at
        and series.measured_at >= detection.measured_at - interval '{{ training_days }} days'
),

weekday_medians as (
    select
        series_key,
        weekday,
        median(metric_value) as weekday_median,
        count(*) as weekday_count
    from training
    group by 1, 2
),

overall_medians as (
    select
        series_key,
        median(metric_value) as overall_median,
        count(*) as training_count,
        count(case when is_same_weekday then 1 end) as same_weekday_count
    from training
    group by 1
),

weekly_pattern as (
    select
        training.series_key,
        greatest(
            1.4826 * median(abs(training.metric_value - overall_medians.overall_median)),
            (quantile_cont(training.metric_value, 0.9)
                - quantile_cont(training.metric_value, 0.1)) / 2.563
        ) as overall_spread,
        1.4826 * median(
            case when weekday_medians.weekday_count >= 2
                then abs(training.metric_value - weekday_medians.weekday_median)
                * sqrt(weekday_medians.weekday_count / (weekday_medians.weekday_count - 1.0))
            end
        ) as weekday_spread
    from training
    inner join overall_medians on training.series_key = overall_medians.series_key
    inner join weekday_medians
        on training.series_key = weekday_medians.series_key
        and training.weekday = weekday_medians.weekday
    group by 1
),

models as (
    select
        overall_medians.series_key,
        overall_medians.training_count,
        {% if seasonality == 'none' -%}
        false
        {%- elif seasonality == 'day_of_week' -%}
        overall_medians.same_weekday_count >= 3
        {%- else -%}
        overall_medians.same_weekday_count >= 3
        and weekly_pattern.weekday_spread < 0.5 * weekly_pattern.overall_spread
        {%- endif %} as is_seasonal
    from overall_medians
    inner join weekly_pattern on overall_medians.series_key = weekly_pattern.series_key
),

seasoned as (
    select
        training.*,
        models.is_seasonal,
        case when models.is_seasonal then training.weekday else 0 end as season
    from training
    inner join models on training.series_key = models.series_key
    {%- if seasonality == 'day_of_week' %}
    where models.is_seasonal
    {%- endif %}
),

slopes as (
    select
        earlier.series_key,
        median(
            (later.metric_value - earlier.metric_value) / (earlier.age_days - later.age_days)
        ) as slope
    from seasoned as earlier
    inner join seasoned as later
        on earlier.series_key = later.series_key
        and earlier.season = later.season
        and earlier.age_days - later.age_days >= 0.5
    group by 1
    having count(*) >= 3
),

carried as (
    select
        seasoned.*,
        {% if trend -%}
        coalesce(slopes.slope, 0)
        {%- else -%}
        0
        {%- endif %} as slope,
        seasoned.metric_value
        {% if trend %}+ coalesce(slopes.slope, 0) * seasoned.age_days{% endif %} as carried_value
    from seasoned
    left join slopes on seasoned.series_key = slopes.series_key
),

season_levels as (
    select
        series_key,
        season,
        median(carried_value) as level,
        count(*) as season_count
    from carried
    group by 1, 2
),

out_of_sample as (
    select
        carried.series_key,
        carried.age_days,
        abs(carried.carried_value - median(others.carried_value)) as deviation
    from carried
    inner join carried as others
        on carried.series_key = others.series_key
        and carried.season = others.season
        and carried.age_days <> others.age_days
    group by carried.series_key, carried.age_days, carried.carried_value
),

spreads as (
    select
        carried.series_key,
        max(carried.slope) as slope,
        bool_or(carried.is_seasonal) as is_seasonal,
        1.4826 * median(out_of_sample.deviation) as mad_spread,
        (quantile_cont(carried.carried_value, 0.9)
            - quantile_cont(carried.carried_value, 0.1)) / 2.563 as quantile_spread
    from carried
    left join out_of_sample
        on carried.series_key = out_of_sample.series_key
        and carried.age_days = out_of_sample.age_days
    group by 1
),

scored as (
    select
        detection.*,
        season_levels.level as expected_value,
        season_levels.season_count,
        models.training_count,
        spreads.is_seasonal,
        spreads.slope,
        case when spreads.is_seasonal then spreads.mad_spread
            else greatest(spreads.mad_spread, spreads.quantile_spread)
        end as spread
    from detection
    inner join models on detection.series_key = models.series_key
    inner join spreads on detection.series_key = spreads.series_key
    inner join season_levels
        on detection.series_key = season_levels.series_key
        and season_levels.season = case when spreads.is_seasonal
            then extract(isodow from detection.measured_at) else 0 end
    where models.training_count >= {{ min_history }}
),

tolerated as (
    select
        *,
        greatest(
            {{ sensitivity }} * spread,
            {{ min_absolute_change }},
            {{ min_relative_change }} * abs(expected_value)
        ) as tolerance
    from scored
),

bounded as (
    select
        *,
        {% if direction == 'up' -%} cast(null as double)
        {%- else -%} expected_value - tolerance
        {%- endif %} as lower_bound,
        {% if direction == 'down' -%} cast(null as double)
        {%- else -%} expected_value + tolerance
        {%- endif %} as upper_bound
    from tolerated
),

{%- set reason -%}
coalesce(source_name || '.', '') || table_name
|| coalesce('.' || column_name, '') || ': ' || metric_name || ' is '
|| cast(round(metric_value, 4) as varchar) || ', expected '
|| cast(round(expected_value, 4) as varchar) || ' +/- '
|| cast(round(tolerance, 4) as varchar)
|| ' (' || case when is_seasonal
    then 'median of ' || cast(season_count as varchar) || ' earlier same-weekday'
    else 'median of ' || cast(training_count as varchar) || ' earlier'
end || ' measurements'
|| case when slope <> 0 and expected_value <> 0
    then ', trend ' || cast(round(100 * slope / abs(expected_value), 2) as varchar)
    || ' %/day'
    else ''
end
|| ', spread ' || cast(round(spread, 4) as varchar) || ')'
{%- endset %}

final as (
    {{ dataops_monitor_result('bounded', {
        'is_anomaly': 'coalesce(metric_value < lower_bound or metric_value > upper_bound, false)',
        'reason': reason,
    }, band=true) | indent(4) }}
)

select * from final
{%- endmacro %}
