{#-
    Fail unless `value` (an accepted value or a coded value from the declaration) is plain text:
    no quote, backslash or control character, so it can be written as a literal on any engine.
    Numbers are accepted and used as text; booleans and nulls (YAML's yes/no/~) are refused.
-#}
{% macro validate_literal(value, where) -%}
    {%- if value is boolean or value is none or (value is not string and value is not number)
        or not modules.re.fullmatch("[^'\\\\\\x00-\\x1f\\x7f]{0,200}", value | string) -%}
        {{ exceptions.raise_compiler_error(
            where ~ " " ~ (value | string) ~ " is not an allowed value: expected text without "
            ~ "quotes, backslashes or control characters (at most 200 characters); quote "
            ~ "yes/no/true/false in YAML.") }}
    {%- endif -%}
{%- endmacro %}
