{#-
    dbt.cast on Spark with the project's portable type names (see spark_type_name): contracts
    declare `data_type: varchar`, and dbt checks a contract by casting null to each declared type.
    Selected through `dispatch` in dbt_project.yml.
-#}
{% macro spark__cast(field, type) -%}
    cast({{ field }} as {{ spark_type_name(type) }})
{%- endmacro %}
