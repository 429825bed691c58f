{#-
    The platform's observability tables, created when missing. `platform.events` has the shape
    defined in dataops/core/events.py (a pytest checks both definitions agree), so dbt and
    Python write one event log. `platform.metric_history` holds one row per monitored table,
    column, metric and measurement, with the band the anomaly monitor judged it with (expected
    value, lower and upper bound, the monitor's test) where one did (dataops_record_bands).
-#}
{% macro dataops_platform_tables() -%}
create schema if not exists platform;
create table if not exists platform.events (
    event_id varchar not null,
    event_type varchar not null,
    occurred_at timestamp not null,
    status varchar,
    source_name varchar,
    table_name varchar,
    file_name varchar,
    file_hash varchar,
    batch_id varchar,
    dbt_invocation_id varchar,
    node_id varchar,
    dagster_run_id varchar,
    message varchar,
    details varchar
);
create table if not exists platform.metric_history (
    measured_at timestamp not null,
    dbt_invocation_id varchar not null,
    node_id varchar not null,
    table_kind varchar not null,
    source_name varchar,
    table_name varchar not null,
    column_name varchar,
    metric_name varchar not null,
    metric_value double,
    batch_id varchar,
    file_hash varchar,
    expected_value double,
    lower_bound double,
    upper_bound double,
    judged_by varchar
);
{#- The band columns came later: add them to a history created before. -#}
{%- for column in ['expected_value', 'lower_bound', 'upper_bound'] %}
alter table platform.metric_history add column if not exists {{ column }} double;
{%- endfor %}
alter table platform.metric_history add column if not exists judged_by varchar;
{%- endmacro %}


{#- A SQL string literal, or null. -#}
{% macro dataops_literal(value) -%}
    {%- if value is none -%}null{%- else -%}'{{ (value | string).replace("'", "''") }}'{%- endif -%}
{%- endmacro %}


{#-
    The measurement time of this invocation (UTC): var `dataops_as_of` or env DATAOPS_AS_OF (a
    simulated clock, for replaying days; the env var keeps dbt's partial parsing), else the start.
-#}
{% macro dataops_as_of() -%}
    {%- set as_of = var('dataops_as_of', none) or env_var('DATAOPS_AS_OF', '') or none -%}
    {%- if as_of is none -%}
        {%- set as_of = run_started_at.strftime('%Y-%m-%d %H:%M:%S') -%}
    {%- elif not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9:.]+)?', as_of | string) -%}
        {{ exceptions.raise_compiler_error(
            "var dataops_as_of (or env DATAOPS_AS_OF) is '" ~ as_of ~ "': expected a UTC timestamp like 2025-01-31 23:00:00.") }}
    {%- endif -%}
    cast('{{ as_of }}' as timestamp)
{%- endmacro %}


{#- Delete history older than the configured retention (vars dataops_retention). -#}
{% macro dataops_apply_retention() -%}
    {%- set retention = var('dataops_retention', {}) -%}
    {%- set metric_days = retention.get('metric_history_days', 180) -%}
    {%- set event_days = retention.get('events_days', 365) -%}
    {%- for name, days in [('metric_history_days', metric_days), ('events_days', event_days)] -%}
        {%- if days is not number or days < 1 -%}
            {{ exceptions.raise_compiler_error(
                "dbt_project.yml vars.dataops_retention." ~ name ~ " is '" ~ days
                ~ "': expected a whole number of days, at least 1.") }}
        {%- endif -%}
    {%- endfor -%}
delete from platform.metric_history
where measured_at < {{ dataops_as_of() }} - interval '{{ metric_days | int }} days';
delete from platform.events
where occurred_at < {{ dataops_as_of() }} - interval '{{ event_days | int }} days';
{%- endmacro %}
