{#- The SQL expression that stages one declared column (see source_declaration). -#}
{% macro staging_column_expression(column) -%}
    {%- set raw = adapter.quote(column.name) -%}
    {%- if column.is_string -%}
        {%- set expression = "nullif(trim(cast(" ~ raw ~ " as " ~ dbt.type_string() ~ ")), '')" -%}
    {%- else -%}
        {%- set expression = "cast(" ~ raw ~ " as " ~ column.data_type ~ ")" -%}
    {%- endif -%}
    {%- if column.is_pii -%}
        {%- set expression = dbt.hash(expression) -%}
    {%- endif -%}
    {{- expression -}}
{%- endmacro %}
