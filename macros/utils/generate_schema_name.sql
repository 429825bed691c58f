{#-
    dev and prod: each model goes to its folder's schema (staging, intermediate, marts), since each
    target has its own warehouse file. ci: everything goes to the target schema (pr_<number>), so a
    pull request's environment is one schema that can be dropped whole.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if target.name == 'ci' or custom_schema_name is none -%}
        {{ target.schema | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
