{#-
    Fail unless `name` is a plain snake_case identifier; `where` says which declaration it came from.
    With source_column=true, a column name as delivered in a file is accepted too ("Contact ID",
    "E-Mail": letters, digits, spaces, hyphens, dots, underscores; never a quote).
-#}
{% macro validate_identifier(name, where, source_column=false) -%}
    {%- set pattern = '[A-Za-z_][A-Za-z0-9_ .\-]{0,62}' if source_column else '[a-z_][a-z0-9_]{0,62}' -%}
    {%- if name is not string or not modules.re.fullmatch(pattern, name) -%}
        {{ exceptions.raise_compiler_error(
            where ~ " '" ~ (name | string) ~ "' is not a valid identifier: "
            ~ ("expected letters, digits, spaces, hyphens, dots and underscores (at most 63 characters)."
               if source_column else
               "expected lower snake_case letters, digits and underscores (at most 63 characters).")) }}
    {%- endif -%}
{%- endmacro %}
