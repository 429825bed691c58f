{#-
    dev and prod: each model goes to its folder's schema (staging, intermediate, marts), since each
    target has its own warehouse file. ci: everything goes to the target schema (pr_<number>), so a
    pull request's environment is one schema that can be dropped whole. So does any target whose
    schema is a PR schema (pr_<number>): on a shared server (the postgres target with
    DATAOPS_PG_SCHEMA=pr_<number>) a PR environment is one schema of the shared database.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if target.name == 'ci' or modules.re.fullmatch('pr_[0-9]+', target.schema | trim)
        or custom_schema_name is none -%}
        {{ target.schema | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
