{#-
    on-run-start: create the platform tables, apply retention, record `dbt.invocation_started`
    and measure the monitored source tables (before any test reads the metric history): those
    in the target's own catalog. A PR build reads prod's raw tables (another catalog, through
    var dataops_raw_database): prod's own builds measure them, a PR build never scans them.
-#}
{% macro dataops_on_run_start() -%}
    {%- if not execute or not dataops_observability_enabled() -%}{{ return('') }}{%- endif -%}
    {%- set sources = [] -%}
    {%- for spec in dataops_monitored_tables()
          if spec.kind == 'source' and (spec.database or target.database) == target.database -%}
        {%- do sources.append(spec) -%}
    {%- endfor -%}
{{ dataops_platform_tables() }}
{{ dataops_apply_retention() }}
insert into platform.events (
    event_id, event_type, occurred_at, status, dbt_invocation_id, dagster_run_id, message, details
) values (
    '{{ invocation_id }}:started', 'dbt.invocation_started',
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp), 'started',
    '{{ invocation_id }}', {{ dataops_literal(env_var('DAGSTER_RUN_ID', '') or none) }},
    {{ dataops_literal('dbt ' ~ flags.WHICH) }},
    {{ dataops_literal(tojson({'command': flags.WHICH, 'target': target.name,
        'selector': invocation_args_dict.get('select'), 'as_of': var('dataops_as_of', none) or env_var('DATAOPS_AS_OF', '') or none,
        'target_path': env_var('DBT_TARGET_PATH', '') or none})) }}
);
{{ dataops_collect_metrics(sources) }}
{%- endmacro %}


{#-
    on-run-end: one insert of every node result (model, seed, snapshot, test, unit test) and
    `dbt.invocation_ended`; one `anomaly.detected` event per anomaly a monitor stored, and the
    band each metric monitor judged with onto the measurements it judged. (The
    monitored models are measured by their post-hook, dataops_after_model_build, as they are
    built.)
-#}
{% macro dataops_on_run_end(results) -%}
    {%- if not execute or not dataops_observability_enabled() -%}{{ return('') }}{%- endif -%}
    {%- set dagster_run_id = dataops_literal(env_var('DAGSTER_RUN_ID', '') or none) -%}
    {%- set now = modules.datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M:%S.%f') -%}
    {%- set rows = [] -%}
    {%- set anomalies = [] -%}
    {%- set judged = [] -%}
    {%- set counts = {} -%}
    {%- set built_models = results | selectattr('node.resource_type', 'equalto', 'model') | list -%}
    {%- for result in results -%}
        {%- set node = result.node -%}
        {%- set status = result.status | string -%}
        {%- set message = result.message if result.message is string else none -%}
        {%- set failures = result.failures if result.failures is number else none -%}
        {%- if built_models and node.resource_type == 'test' and node.test_metadata
              and node.test_metadata.name == 'model_freshness' and status in ('pass', 'warn', 'fail') -%}
            {#- dbt ran it when its one parent (platform.events) was ready, maybe before models
                this invocation rebuilt: judged again now, after every model. -#}
            {%- set verdict = dataops_judge_after_models(node) -%}
            {%- set status, message, failures = verdict.status, verdict.message, verdict.failures -%}
        {%- endif -%}
        {%- do counts.update({status: counts.get(status, 0) + 1}) -%}
        {%- set attached = graph.nodes.get(node.attached_node) or graph.sources.get(node.attached_node)
            if node.resource_type == 'test' and node.attached_node else none -%}
        {%- set subject = attached or node -%}
        {%- set completed = (result.timing | map(attribute='completed_at') | select | list) -%}
        {%- set occurred = completed[-1].strftime('%Y-%m-%d %H:%M:%S.%f') if completed else now -%}
        {%- set response = result.adapter_response if result.adapter_response is mapping else {} -%}
        {%- set details = {
            'resource_type': node.resource_type | string,
            'name': node.name,
            'execution_time_s': result.execution_time if result.execution_time is number else none,
            'rows_affected': response.get('rows_affected'),
            'failures': failures,
            'relation': node.relation_name if node.relation_name is string else none,
            'tested_node_id': attached.unique_id if attached else none,
            'test_name': node.test_metadata.name
                if node.resource_type == 'test' and node.test_metadata is defined and node.test_metadata
                else none,
        } -%}
        {%- do rows.append("(" ~ dataops_literal(invocation_id ~ ':' ~ node.unique_id) ~ ", 'dbt.node_result', "
            ~ "cast('" ~ occurred ~ "' as timestamp), " ~ dataops_literal(status) ~ ", "
            ~ dataops_literal(subject.source_name if subject.resource_type == 'source' else none) ~ ", "
            ~ dataops_literal(subject.name) ~ ", '" ~ invocation_id ~ "', "
            ~ dataops_literal(node.unique_id) ~ ", " ~ dagster_run_id ~ ", "
            ~ dataops_literal(message) ~ ", "
            ~ dataops_literal(tojson(details)) ~ ")") -%}
        {%- set monitor = node.test_metadata.name if node.resource_type == 'test'
              and node.relation_name and node.test_metadata else none -%}
        {%- if monitor in dataops_anomaly_test_names() and status in ('fail', 'warn') -%}
            {%- do anomalies.append((node, status)) -%}
        {%- endif -%}
        {%- if monitor in dataops_band_test_names() and status in ('pass', 'warn', 'fail') -%}
            {%- do judged.append(node) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- do rows.append("('" ~ invocation_id ~ ":ended', 'dbt.invocation_ended', cast('" ~ now
        ~ "' as timestamp), " ~ dataops_literal('error' if counts.get('error') or counts.get('fail') else 'success')
        ~ ", null, null, '" ~ invocation_id ~ "', null, " ~ dagster_run_id ~ ", "
        ~ dataops_literal('dbt ' ~ flags.WHICH ~ ': ' ~ results | length ~ ' nodes') ~ ", "
        ~ dataops_literal(tojson({'statuses': counts, 'target': target.name})) ~ ")") -%}
{{ dataops_platform_tables() }}
insert into platform.events (
    event_id, event_type, occurred_at, status, source_name, table_name, dbt_invocation_id, node_id,
    dagster_run_id, message, details
) values
{{ rows | join(",\n") }};
{% for node, status in anomalies -%}
insert into platform.events (
    event_id, event_type, occurred_at, status, source_name, table_name, batch_id, file_hash,
    dbt_invocation_id, node_id, dagster_run_id, message, details
)
select
    '{{ invocation_id }}:{{ node.unique_id }}:' || cast(row_number() over () as varchar),
    'anomaly.detected', cast('{{ now }}' as timestamp), {{ dataops_literal(status) }},
    source_name, table_name, batch_id, file_hash, '{{ invocation_id }}', {{ dataops_literal(node.unique_id) }},
    {{ dagster_run_id }}, reason,
    to_json({'monitor': {{ dataops_literal(node.test_metadata.name) }}, 'monitored_node_id': node_id,
        'column_name': column_name, 'metric_name': metric_name, 'metric_value': metric_value,
        'expected': expected_value, 'tolerance': tolerance, 'measured_at': measured_at})::varchar
from {{ node.relation_name }}
{%- if node.test_metadata.name in dataops_band_test_names() %}
where is_anomaly
{%- endif %};
{% endfor -%}
{% for node in judged -%}
{{ dataops_record_bands(node) }}
{% endfor -%}
{%- endmacro %}


{#-
    The band a metric monitor judged each measurement with (its stored rows: every judged
    measurement, anomalous or not), written onto those measurements in platform.metric_history:
    the dashboard draws what the monitor used instead of re-deriving it.
-#}
{% macro dataops_record_bands(node) -%}
update platform.metric_history as history
set expected_value = judged.expected_value,
    lower_bound = judged.lower_bound,
    upper_bound = judged.upper_bound,
    judged_by = {{ dataops_literal(node.unique_id) }}
from {{ node.relation_name }} as judged
where history.node_id = judged.node_id
    and history.measured_at = judged.measured_at
    and history.metric_name = judged.metric_name
    and history.column_name is not distinct from judged.column_name;
{%- endmacro %}


{#- The metric monitors (dataops_metric_anomalies): they store every judged row, with its band. -#}
{% macro dataops_band_test_names() -%}
    {{ return(['volume_anomaly', 'null_rate_anomaly', 'distribution_anomaly',
               'model_metrics_anomaly']) }}
{%- endmacro %}


{#-
    A test judged again at the end of the invocation (on-run-end, after every node): its query
    (compiled SQL) replaces its stored failures, and its status follows their count (its
    fail_calc) and its severity, as dbt would. For model_freshness, which dbt may run before
    the models this invocation rebuilds (or skips): the recorded verdict, its events and
    incidents are this one;
    dbt's own console line and run_results.json keep the first evaluation.
-#}
{% macro dataops_judge_after_models(node) -%}
    {%- do run_query("create or replace table " ~ node.relation_name ~ " as "
        ~ node.compiled_code) -%}
    {%- set count = run_query("select " ~ (node.config.fail_calc or 'count(*)') ~ " from "
        ~ node.relation_name).rows[0][0] | int -%}
    {%- set severity = (node.config.severity or 'error') | lower -%}
    {%- set status = 'pass' if count == 0 else ('warn' if severity == 'warn' else 'fail') -%}
    {%- set message = none if count == 0 else 'Got ' ~ count ~ ' result' ~ ('' if count == 1 else 's')
        ~ ', configured to ' ~ status ~ ' if != 0 (judged at the end of the invocation)' -%}
    {{ return({'status': status, 'message': message, 'failures': count}) }}
{%- endmacro %}


{% macro dataops_anomaly_test_names() -%}
    {{ return(['volume_anomaly', 'freshness_anomaly', 'null_rate_anomaly',
               'distribution_anomaly', 'schema_change', 'schema_drift', 'model_metrics_anomaly',
               'model_freshness']) }}
{%- endmacro %}


{#- Env DATAOPS_OBSERVABILITY=off turns the hooks off (bench/bench_observability.py compares). -#}
{% macro dataops_observability_enabled() -%}
    {{ return(env_var('DATAOPS_OBSERVABILITY', 'on') | lower not in ('off', 'false', '0')) }}
{%- endmacro %}


{#-
    post-hook of every model: records `dbt.model_built` (at the measurement clock) for
    model_freshness, which must see a model rebuilt in this invocation as fresh although its node
    result is written only at the end; and a model with a `monitors` block is measured into
    platform.metric_history right after it is built, so its model_metrics_anomaly test (attached
    to the model, run after it) judges this build, not the previous one. A model that is not
    rebuilt is not measured: a skipped mart shows as a missing measurement, and its staleness is
    model_freshness's to report.
-#}
{% macro dataops_after_model_build() -%}
    {%- if not execute or not dataops_observability_enabled() -%}{{ return('') }}{%- endif -%}
    {%- set node = graph.nodes.get(model.unique_id) -%}
    {%- set monitors = (node.config.meta or {}).get('monitors') if node else none -%}
insert into platform.events (
    event_id, event_type, occurred_at, status, table_name, dbt_invocation_id, node_id,
    dagster_run_id, message
) values (
    {{ dataops_literal(invocation_id ~ ':' ~ model.unique_id ~ ':built') }}, 'dbt.model_built',
    {{ dataops_as_of() }}, 'success', {{ dataops_literal(model.name) }}, '{{ invocation_id }}',
    {{ dataops_literal(model.unique_id) }}, {{ dataops_literal(env_var('DAGSTER_RUN_ID', '') or none) }},
    {{ dataops_literal('built ' ~ this) }}
);
{% if monitors -%}
{{ dataops_collect_metrics([dataops_monitor_spec(node, 'model', monitors)]) }}
{%- endif %}
{%- endmacro %}
