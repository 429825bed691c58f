{#-
    Freshness of every model: a model whose last successful build (a `dbt.model_built` event from
    its post-hook, or a successful node result) is older than its freshness SLO at the measurement
    clock. The SLO is the model's `meta.slo.freshness_hours` (see `dataops slo`), else
    `default_hours` (var dataops_model_freshness_hours, 30: a daily build with slack). A model never
    built successfully is not judged (nothing was promised yet). Attached to platform.events.
-#}
{% test model_freshness(model, default_hours=none) %}
{{ config(store_failures=true, severity='warn') }}
{%- set default = default_hours if default_hours is not none
    else var('dataops_model_freshness_hours', 30) -%}
{%- set slas = [] -%}
{%- for node in (graph.nodes.values() if execute else []) | sort(attribute='unique_id')
        if node.resource_type == 'model' and node.config.enabled
        and node.config.materialized != 'ephemeral' -%}
    {%- set hours = ((node.config.meta or {}).get('slo') or {}).get('freshness_hours', default) -%}
    {%- if hours is not number or hours is sameas true or hours <= 0 -%}
        {{ exceptions.raise_compiler_error("model_freshness: model '" ~ node.name
            ~ "' has freshness_hours '" ~ hours ~ "': expected a number of hours above 0"
            ~ " (meta.slo.freshness_hours or var dataops_model_freshness_hours).") }}
    {%- endif -%}
    {%- do slas.append("(" ~ dataops_literal(node.unique_id) ~ ", " ~ dataops_literal(node.name)
        ~ ", " ~ hours ~ ")") -%}
{%- endfor %}
with

slos (node_id, model_name, slo_hours) as (
    values {{ (slas or ["(null, null, 1)"]) | join(",\n        ") }}
),

builds as (
    select
        node_id,
        max(occurred_at) as last_built_at
    from {{ model }}
    where event_type = 'dbt.model_built'
        or (event_type = 'dbt.node_result' and status = 'success')
    group by 1
),

ages as (
    select
        slos.node_id,
        slos.model_name,
        slos.slo_hours,
        builds.last_built_at,
        ({{ dataops_epoch_us(dataops_as_of()) }} - {{ dataops_epoch_us('builds.last_built_at') }})
        / 3600000000.0 as hours_since_build
    from slos
    inner join builds on slos.node_id = builds.node_id
),

{%- set reason -%}
model_name || ': not rebuilt for ' || cast(round(hours_since_build, 1) as varchar)
|| ' hours (last successful build ' || strftime(last_built_at, '%Y-%m-%d %H:%M')
|| ' UTC), over its freshness SLO of ' || cast(slo_hours as varchar) || ' hours'
{%- endset %}

final as (
    {{ dataops_monitor_result('ages', {
        'source_name': 'cast(null as varchar)',
        'table_name': 'model_name',
        'column_name': 'cast(null as varchar)',
        'metric_name': "'hours_since_build'",
        'metric_value': 'hours_since_build',
        'expected_value': 'cast(slo_hours as double)',
        'tolerance': '0.0',
        'measured_at': dataops_as_of(),
        'batch_id': 'cast(null as varchar)',
        'file_hash': 'cast(null as varchar)',
        'reason': reason,
    }) | indent(4) }}
    where hours_since_build > slo_hours
)

select * from final
{% endtest %}
