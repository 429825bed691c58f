{#-
    The published name of a relation during a release build: `"db"."staging__r7"."x"` becomes
    `"db"."staging"."x"` (what readers query, the current release). Outside a release build the
    name is returned unchanged. The observability hooks measure sources on their published
    staging model at run start, before the release has built its own.
-#}
{% macro dataops_published_relation(relation_name) -%}
    {%- set release = var('dataops_release', none) -%}
    {%- if release and relation_name -%}
        {{ return(relation_name | replace('__' ~ release ~ '"', '"')) }}
    {%- endif -%}
    {{ return(relation_name) }}
{%- endmacro %}
