{#-
    dbt.type_string() on PostgreSQL: `varchar`, the type the marts' contracts declare
    (`data_type: varchar`), instead of dbt-postgres's `text`. Both are the same unlimited string
    type, but an incremental model with on_schema_change='fail' compares the type names and would
    refuse its second run (text in the new rows, character varying in the contracted table).
    Selected through `dispatch` in dbt_project.yml.
-#}
{% macro postgres__type_string() -%}
    varchar
{%- endmacro %}
