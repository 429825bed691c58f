{#-
    Cast that yields null instead of failing when a value does not convert. stage_source counts
    those nulls per row (`_cast_failures`), so nothing is silently lost. Dispatched: default is
    dbt's cross-database safe_cast (a real try-cast on BigQuery, Snowflake, ...); DuckDB and
    Spark have try_cast. dbt-postgres has no safe cast (a plain cast fails loudly on a bad value);
    an engine may add `postgres__staging_safe_cast`.
-#}
{% macro staging_safe_cast(expression, data_type) -%}
    {{ return(adapter.dispatch('staging_safe_cast', 'dataops')(expression, data_type)) }}
{%- endmacro %}

{% macro default__staging_safe_cast(expression, data_type) -%}
    {{ return(dbt.safe_cast(expression, data_type) | trim) }}
{%- endmacro %}

{% macro duckdb__staging_safe_cast(expression, data_type) -%}
    {{ return('try_cast(' ~ expression ~ ' as ' ~ data_type ~ ')') }}
{%- endmacro %}

{% macro spark__staging_safe_cast(expression, data_type) -%}
    {{ return('try_cast(' ~ expression ~ ' as ' ~ data_type ~ ')') }}
{%- endmacro %}
