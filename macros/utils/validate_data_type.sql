{#- Fail unless `data_type` is a plain SQL type name such as `bigint` or `decimal(18, 2)`. -#}
{% macro validate_data_type(data_type, where) -%}
    {%- if data_type is not string
        or not modules.re.fullmatch('[a-z][a-z0-9_ ]*(\([0-9]+( *, *[0-9]+)?\))?', data_type | lower) -%}
        {{ exceptions.raise_compiler_error(
            where ~ ": data_type '" ~ (data_type | string) ~ "' is not a valid type: "
            ~ "expected a type name such as bigint, varchar, timestamp or decimal(18, 2).") }}
    {%- endif -%}
{%- endmacro %}
