{#-
    The rules a source declaration sets for its staging model, checked in one test (one node to
    parse and one query per staging model instead of one test per rule; `dataops sources sync`
    writes it, docs/source-declarations.md "Derived tests"):
        data_tests:
          - staging_rules:
              arguments:
                primary_key: [supply_id, sku]             # present and unique as a combination
                not_null: [customer_id]                   # optional: no null
                accepted_values: {status: [open, closed]} # optional: no other value (nulls pass)
                cast_failures: true                       # optional: rows with _cast_failures > 0
    Each failing row names the rule, the column, the value, how many rows fail it, why, and its
    severity: the cast-failure rows warn, every other rule fails the test. The test's failure
    count is the number of rows failing a rule (fail_calc below).
-#}
{% test staging_rules(model, primary_key, not_null=[], accepted_values={}, cast_failures=false) %}
{{ config(
    fail_calc="coalesce(sum(failing_rows), 0)",
    error_if="> coalesce(sum(case when severity = 'warn' then failing_rows end), 0)",
) }}
{%- if not execute -%}
    {{ return('select 1 as failing_rows') }}
{%- endif -%}
{%- set where = "Test staging_rules on '" ~ model ~ "'" -%}
{%- set key_failures = dataops_primary_key_failures(model, primary_key, where, 'primary_key') -%}
{%- set key_columns = [primary_key] if primary_key is string else primary_key -%}
{%- if not_null is string or not_null is not iterable or not_null is mapping -%}
    {{ exceptions.raise_compiler_error(where ~ ": not_null is '" ~ not_null
        ~ "'; expected a list of column names.") }}
{%- endif -%}
{%- if accepted_values is not mapping -%}
    {{ exceptions.raise_compiler_error(where ~ ": accepted_values is '" ~ accepted_values
        ~ "'; expected a mapping of column name to a list of values.") }}
{%- endif -%}
{%- for column in not_null | list + accepted_values.keys() | list -%}
    {%- if column is not string or not modules.re.fullmatch('[A-Za-z_][A-Za-z0-9_]{0,62}', column) -%}
        {{ exceptions.raise_compiler_error(where ~ ": '" ~ column
            ~ "' is not a column name; expected snake_case names.") }}
    {%- endif -%}
{%- endfor -%}
{%- set text = dbt.type_string() -%}
{%- set key_values = [] -%}
{%- for column in key_columns -%}
    {%- do key_values.append("coalesce(cast(" ~ adapter.quote(column) ~ " as " ~ text
        ~ "), 'null')") -%}
{%- endfor -%}
with

key_failures as (

    {{ key_failures | indent(4) }}

),

failures as (

    select
        'primary_key' as rule,
        {{ staging_literal(key_columns | join(', ')) }} as column_name,
        {{ key_values | join(" || ', ' || ") }} as value,
        rows_with_key as failing_rows,
        reason,
        'error' as severity

    from key_failures
    {%- for column in not_null %}

    union all

    select
        'not_null' as rule,
        {{ staging_literal(column) }} as column_name,
        cast(null as {{ text }}) as value,
        count(*) as failing_rows,
        'value is null' as reason,
        'error' as severity

    from {{ model }}
    where {{ adapter.quote(column) }} is null
    {%- endfor %}
    {%- for column, values in accepted_values.items() %}
    {%- if values is string or values is not iterable or values is mapping or not values -%}
        {{ exceptions.raise_compiler_error(where ~ ": accepted_values of '" ~ column ~ "' is '"
            ~ values ~ "'; expected a non-empty list of values.") }}
    {%- endif %}

    union all

    select
        'accepted_values' as rule,
        {{ staging_literal(column) }} as column_name,
        cast({{ adapter.quote(column) }} as {{ text }}) as value,
        count(*) as failing_rows,
        'value is not one of the accepted values' as reason,
        'error' as severity

    from {{ model }}
    where cast({{ adapter.quote(column) }} as {{ text }}) not in (
        {%- for value in values -%}
        {{ staging_literal(value) }}{{ ', ' if not loop.last }}
        {%- endfor -%}
    )
    group by {{ adapter.quote(column) }}
    {%- endfor %}
    {%- if cast_failures %}

    union all

    select
        'cast_failures' as rule,
        '_cast_failures' as column_name,
        cast(null as {{ text }}) as value,
        count(*) as failing_rows,
        'a value did not convert to its declared type (null in the staged row)' as reason,
        'warn' as severity

    from {{ model }}
    where _cast_failures > 0
    {%- endif %}

)

select * from failures
where failing_rows > 0

{% endtest %}
