{#-
    The primary key of a model, one column or several: every row has a value in each key column
    and no combination of values occurs twice. One query (one scan) replaces `unique` +
    `not_null` on a one-column key and tests a composite key as a whole:
        data_tests:
          - primary_key:
              arguments: {columns: [supply_id, sku]}
    Each failing row names the key values, how many rows share them and why it fails.
-#}
{% test primary_key(model, columns) %}
{%- set key_columns = [columns] if columns is string else columns -%}
{%- if key_columns is not iterable or key_columns is mapping or key_columns | length == 0 -%}
    {{ exceptions.raise_compiler_error(
        "Test primary_key on '" ~ model ~ "': columns is '" ~ columns
        ~ "'; expected a column name or a list of column names.") }}
{%- endif -%}
{%- set quoted = [] -%}
{%- for column in key_columns -%}
    {%- if column is not string or not modules.re.fullmatch('[A-Za-z_][A-Za-z0-9_]{0,62}', column) -%}
        {{ exceptions.raise_compiler_error(
            "Test primary_key on '" ~ model ~ "': '" ~ column
            ~ "' is not a column name; expected snake_case names.") }}
    {%- endif -%}
    {%- do quoted.append(adapter.quote(column)) -%}
{%- endfor %}
with

key_counts as (

    select
        {{ quoted | join(',\n        ') }},
        count(*) as rows_with_key

    from {{ model }}
    group by {{ quoted | join(', ') }}

),

final as (

    select
        *,
        case
            when {{ quoted | join(' is null or ') }} is null then 'a key column is null'
            else 'key occurs more than once'
        end as reason

    from key_counts
    where rows_with_key > 1 or {{ quoted | join(' is null or ') }} is null

)

select * from final

{% endtest %}
