{#-
    A string literal for a value from the declaration (already checked by validate_literal:
    no quote, backslash or control character); quotes are still escaped, so a value can never
    end the literal. Dispatched: Spark escapes with a backslash.
-#}
{% macro staging_literal(value) -%}
    {{ return(adapter.dispatch('staging_literal', 'dataops')(value)) }}
{%- endmacro %}

{% macro default__staging_literal(value) -%}
    {{ return("'" ~ (value | string).replace("'", "''") ~ "'") }}
{%- endmacro %}

{% macro spark__staging_literal(value) -%}
    {{ return("'" ~ (value | string).replace('\\', '\\\\').replace("'", "\\'") ~ "'") }}
{%- endmacro %}
