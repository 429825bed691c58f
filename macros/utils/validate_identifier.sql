{#- Fail unless `name` is a plain snake_case identifier; `where` says which declaration it came from. -#}
{% macro validate_identifier(name, where) -%}
    {%- if name is not string or not modules.re.fullmatch('[a-z_][a-z0-9_]{0,62}', name) -%}
        {{ exceptions.raise_compiler_error(
            where ~ " '" ~ (name | string) ~ "' is not a valid identifier: "
            ~ "expected lower snake_case letters, digits and underscores (at most 63 characters).") }}
    {%- endif -%}
{%- endmacro %}
