{#-
    Generate a staging model from the source registry: one call per staging model,
        {{ stage_source('shop', 'orders') }}
    It stages each declared column (staging_column_expression: expression, trim, case, coded
    values, cast or safe cast, UTC conversion, PII hash, rename), counts the values that failed a
    safe cast per row (`_cast_failures`, only when a column asks for a safe cast), keeps the lineage
    columns, deduplicates to the latest record per primary key (by meta.dedupe.latest_by, then by
    load time) and adds declared derived columns.

    `changed_since` (optional, for the observability hooks): a condition on lineage columns, which
    are the same in the raw table and in staging (e.g. on `_loaded_at`); only keys with at least one
    row meeting it are staged. The dedupe ranks whole keys, so each kept key gets exactly the row
    the full model keeps, at the cost of reading the new rows' keys instead of ranking the whole
    table.
-#}
{% macro stage_source(source_name, table_name, changed_since=none) -%}
    {%- if not execute -%}
        {#- Parse time: record the lineage edge only; no dispatch, no declaration read (cheap). -#}
        {%- do source(source_name, table_name) -%}
        {{ return('select 1 as _not_compiled') }}
    {%- endif -%}
    {{ return(adapter.dispatch('stage_source', 'dataops')(source_name, table_name, changed_since)) }}
{%- endmacro %}

{% macro default__stage_source(source_name, table_name, changed_since=none) -%}
{#- source() runs at parse time too, so dbt records the lineage edge. -#}
{%- set source_relation = source(source_name, table_name) -%}
{%- if not execute -%}
select 1 as _not_compiled
{%- else -%}
{%- set decl = source_declaration(source_name, table_name) -%}
{%- set lineage_columns = ['_file_name', '_file_hash', '_batch_id', '_loaded_at'] -%}
{%- if decl.has_safe_casts -%}
    {%- do lineage_columns.insert(0, '_cast_failures') -%}
{%- endif -%}
{%- set order_by = [] -%}
{%- if decl.latest_by -%}
    {%- do order_by.append(adapter.quote(decl.latest_by) ~ ' desc') -%}
{%- endif -%}
{%- do order_by.extend(['_loaded_at desc', '_file_name desc']) -%}
{#- changed_since with a one-column key: the raw rows are limited to the changed keys before any
    column is staged (the staged key expression on both sides, null keys kept together); other
    keys: the staged rows are limited before ranking. -#}
{%- set keys = [decl.primary_key] if decl.primary_key is string else decl.primary_key -%}
{%- set key_columns = decl.columns | selectattr('staged_name', 'in', keys) | list -%}
{%- set key_expression = staging_column_expression(key_columns[0])
    if changed_since and keys | length == 1 and key_columns | length == 1 else none -%}

with

source as (

    select * from {{ source_relation }}
    {%- if key_expression %}
    where {{ key_expression }} in (
        select {{ key_expression }} from {{ source_relation }} where {{ changed_since }}
    )
    or ({{ key_expression }} is null and exists (
        select 1 from {{ source_relation }} where {{ changed_since }} and {{ key_expression }} is null
    ))
    {%- endif %}

),

renamed as (

    select
        {%- for column in decl.columns %}
        {{ staging_column_expression(column) }} as {{ adapter.quote(column.staged_name) }},
        {%- endfor %}
        {%- if decl.has_safe_casts %}
        {% for column in decl.columns | selectattr('safe_cast') -%}
        {{ staging_cast_failure(column) }}{{ ' +' if not loop.last }}
        {% endfor -%}
        as _cast_failures,
        {%- endif %}
        {%- for name in lineage_columns if name != '_cast_failures' %}
        {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from source

),

ranked as (

    select
        *,
        row_number() over (
            partition by
                {%- for key_column in decl.primary_key %}
                {{ adapter.quote(key_column) }}{{ ',' if not loop.last }}
                {%- endfor %}
            order by {{ order_by | join(', ') }}
        ) as _record_rank

    from renamed
    {%- if changed_since and not key_expression %}
    where exists (
        select 1 from renamed as changed
        where {{ changed_since }}
        {%- for key in keys %}
            and changed.{{ adapter.quote(key) }} is not distinct from renamed.{{ adapter.quote(key) }}
        {%- endfor %}
    )
    {%- endif %}

),

final as (

    select
        {%- for column in decl.columns %}
        {{ adapter.quote(column.staged_name) }},
        {%- endfor %}
        {%- for item in decl.derived %}
        cast({{ item.expression }} as {{ item.data_type }}) as {{ adapter.quote(item.name) }},
        {%- endfor %}
        {%- for name in lineage_columns %}
        {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from ranked
    where _record_rank = 1

)

select * from final
{%- endif -%}
{%- endmacro %}
