{#-
    The Spark type for a type name declared in the project's YAML (contracts, seed column_types):
    the declarations use the portable SQL names (`varchar`, `text`), which Spark 4 accepts only
    with a length; they become `string`. Any other type name is returned unchanged.
-#}
{% macro spark_type_name(data_type) -%}
    {%- set name = data_type | string | trim | lower -%}
    {%- if name in ('varchar', 'text', 'character varying')
        or modules.re.fullmatch('(var)?char\\s*\\(\\s*\\d+\\s*\\)', name) -%}
        {{- return('string') -}}
    {%- endif -%}
    {{- return(data_type) -}}
{%- endmacro %}
