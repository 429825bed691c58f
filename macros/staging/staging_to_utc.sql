{#-
    Convert a timestamp delivered as wall-clock time in `timezone` (an IANA name, validated by
    source_declaration) to UTC, as a timestamp without time zone. Dispatched: the default is the
    SQL standard `at time zone` pair (DuckDB, PostgreSQL); Spark has to_utc_timestamp.
-#}
{% macro staging_to_utc(expression, timezone) -%}
    {{ return(adapter.dispatch('staging_to_utc', 'dataops')(expression, timezone)) }}
{%- endmacro %}

{% macro default__staging_to_utc(expression, timezone) -%}
    {{ return('((' ~ expression ~ ') at time zone ' ~ staging_literal(timezone)
        ~ ') at time zone ' ~ staging_literal('UTC')) }}
{%- endmacro %}

{% macro spark__staging_to_utc(expression, timezone) -%}
    {{ return('to_utc_timestamp(' ~ expression ~ ', ' ~ staging_literal(timezone) ~ ')') }}
{%- endmacro %}
