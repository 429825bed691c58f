{#-
    Fail unless `expression` is one scalar SQL expression: no `;`, comments, statements or
    sub-queries, balanced quotes and parentheses. Same rule as dataops/sources/registry.py.
-#}
{% macro validate_expression(expression, where) -%}
    {%- if expression is not string or expression | trim == '' -%}
        {{ exceptions.raise_compiler_error(where ~ ": expression is missing: expected a SQL expression.") }}
    {%- endif -%}
    {%- set re = modules.re -%}
    {%- set outside = re.sub("'[^']*'|\"[^\"]*\"", " 0 ", expression) -%}
    {%- set forbidden = re.search(
        ";|--|/\\*|\\*/|\\b(select|insert|update|delete|merge|drop|create|alter|truncate|attach|"
        ~ "detach|copy|pragma|call|grant|revoke|install|load|export|import|set|with)\\b",
        outside, re.IGNORECASE) -%}
    {%- set problem = none -%}
    {%- if "'" in outside or '"' in outside -%}
        {%- set problem = "has an unterminated quote" -%}
    {%- elif forbidden -%}
        {%- set problem = "contains '" ~ forbidden.group(0) ~ "'" -%}
    {%- elif outside.count('(') != outside.count(')') -%}
        {%- set problem = "has unbalanced parentheses" -%}
    {%- endif -%}
    {%- if problem -%}
        {{ exceptions.raise_compiler_error(
            where ~ ": expression " ~ expression ~ " " ~ problem
            ~ ": expected one scalar SQL expression (no ;, comments or statements/sub-queries).") }}
    {%- endif -%}
{%- endmacro %}
