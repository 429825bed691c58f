{#-
    The rows that break a primary key, one column or several: a select of each key value that
    occurs more than once or has a null in a key column, with how many rows share it
    (rows_with_key) and why it fails (reason). One owner for the key check of the primary_key test
    and of the primary_key rule of staging_rules. Validates the key first: `columns` is a column
    name or a non-empty list of snake_case names; the errors start with `where` and name the
    test's `argument`.
-#}
{% macro dataops_primary_key_failures(model, columns, where, argument='columns') -%}
    {%- set key_columns = [columns] if columns is string else columns -%}
    {%- if key_columns is not iterable or key_columns is mapping or key_columns | length == 0 -%}
        {{ exceptions.raise_compiler_error(where ~ ": " ~ argument ~ " is '" ~ columns
            ~ "'; expected a column name or a list of column names.") }}
    {%- endif -%}
    {%- set keys = [] -%}
    {%- for column in key_columns -%}
        {%- if column is not string or not modules.re.fullmatch('[A-Za-z_][A-Za-z0-9_]{0,62}', column) -%}
            {{ exceptions.raise_compiler_error(where ~ ": '" ~ column
                ~ "' is not a column name; expected snake_case names.") }}
        {%- endif -%}
        {%- do keys.append(adapter.quote(column)) -%}
    {%- endfor -%}
    {%- set key_is_null = keys | join(' is null or ') ~ ' is null' -%}
select
    {{ keys | join(',\n    ') }},
    count(*) as rows_with_key,
    case
        when {{ key_is_null }} then 'a key column is null'
        else 'key occurs more than once'
    end as reason
from {{ model }}
group by {{ keys | join(', ') }}
having count(*) > 1 or {{ key_is_null }}
{%- endmacro %}
