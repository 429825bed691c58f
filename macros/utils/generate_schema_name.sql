{#-
    dev and prod: each model goes to its folder's schema (staging, intermediate, marts), since each
    target has its own warehouse file. ci: everything goes to the target schema (pr_<number>), so a
    pull request's environment is one schema that can be dropped whole. So does any target whose
    schema is a PR schema (pr_<number>): on a shared server (the postgres target with
    DATAOPS_PG_SCHEMA=pr_<number>) a PR environment is one schema of the shared database.

    A release build (write-audit-publish, dataops/publishing/) sets the var `dataops_release`
    (`r<id>`): every model then goes to the release's own physical schema `<schema>__r<id>`, where
    readers do not look; publishing re-points the published `<schema>.<name>` views to it.

    Elementary's package (`dataops elementary setup`, not part of the committed project) keeps its
    tables in one schema, `elementary`, outside releases: they are a log that grows across builds,
    and `dataops elementary report` points edr at the schema the manifest records for them.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set release = var('dataops_release', none) -%}
    {%- if target.name == 'ci' or modules.re.fullmatch('pr_[0-9]+', target.schema | trim) -%}
        {{ target.schema | trim }}
    {%- elif node is not none and node.package_name == 'elementary' -%}
        elementary
    {%- else -%}
        {%- set base = (target.schema if custom_schema_name is none else custom_schema_name) | trim -%}
        {%- if release -%}
            {%- if not modules.re.fullmatch('r[1-9][0-9]*', release | string) -%}
                {{ exceptions.raise_compiler_error(
                    "var dataops_release must look like r<id> (r1, r2, ...), got '"
                    ~ release ~ "'") }}
            {%- endif -%}
            {{ base }}__{{ release }}
        {%- else -%}
            {{ base }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
