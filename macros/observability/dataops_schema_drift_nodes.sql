{#-
    The node ids (as SQL literals) of the monitored sources whose declared drift policy
    (`schema_drift` of the landing block) is `policy`: under additive an undeclared column is
    accepted drift (schema_drift warns), under strict it is a schema change (schema_change fails).
-#}
{% macro dataops_schema_drift_nodes(policy) -%}
    {%- if policy not in ('additive', 'strict') -%}
        {{ exceptions.raise_compiler_error("dataops_schema_drift_nodes: policy is '" ~ policy
            ~ "': expected additive or strict.") }}
    {%- endif -%}
    {%- set nodes = [] -%}
    {%- for spec in dataops_monitored_tables() if spec.schema and spec.schema_drift == policy -%}
        {%- do nodes.append(dataops_literal(spec.node_id)) -%}
    {%- endfor -%}
    {{ return(nodes) }}
{%- endmacro %}
