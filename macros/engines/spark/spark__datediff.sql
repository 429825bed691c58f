{#-
    dbt.datediff on Spark, counting the boundaries crossed for hour, minute and second as DuckDB
    and PostgreSQL do; dbt-spark's own version rounds the elapsed seconds up instead
    (10:00:10 -> 10:01:50 is 1 minute on DuckDB and PostgreSQL, 2 with dbt-spark's). Other date
    parts use dbt-spark's implementation. Selected through `dispatch` in dbt_project.yml.
-#}
{% macro spark__datediff(first_date, second_date, datepart) -%}
    {%- set seconds = {'hour': 3600, 'minute': 60, 'second': 1} -%}
    {%- if datepart in seconds -%}
        (floor(unix_timestamp(cast({{ second_date }} as timestamp)) / {{ seconds[datepart] }})
            - floor(unix_timestamp(cast({{ first_date }} as timestamp)) / {{ seconds[datepart] }}))
    {%- else -%}
        {{ return(dbt.spark__datediff(first_date, second_date, datepart)) }}
    {%- endif -%}
{%- endmacro %}
