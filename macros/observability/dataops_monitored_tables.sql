{#-
    Every monitored table of the project, read from the `monitors` block of the declarations in
    the graph: a source table's `config.meta.monitors` (in its sources YAML; a source-level block
    applies to all its tables) or a model's `config.meta.monitors` (model YAML). Validated here:
    a wrong key, metric or column fails with a compiler error naming the file and the value.

    Shape (dataops/sources/registry.py `Monitors` validates the same block on the Python side):
        monitors: {volume: true, freshness: true, event_time: created_at,
                   columns: {amount: [null_rate, mean, min, max, distinct_count]}}
    Column names are staged names (after rename, or derived columns): a source's column metrics
    are measured on its staging model. Every monitored source is also checked for schema changes
    against its declared columns.
    Returns a list of dicts: node_id, kind (source|model), source_name, table_name, relation,
    database (the relation's catalog),
    measured_relation (the staging model, or the model), loaded_at_field, volume, freshness,
    schema, schema_drift (the declared policy: additive or strict), sla_warn_hours,
    sla_error_hours, declared ([{name, data_type, expression}]), columns ({staged name:
    [metrics]}) and event_time (the staged timestamp column dating each record, or none).
-#}
{% macro dataops_monitored_tables() -%}
    {%- set found = [] -%}
    {%- if not execute -%}{{ return(found) }}{%- endif -%}
    {%- for node in graph.sources.values() | sort(attribute='unique_id') -%}
        {%- set monitors = (node.meta or {}).get('monitors') -%}
        {%- if monitors -%}
            {%- do found.append(dataops_monitor_spec(node, 'source', monitors)) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for node in graph.nodes.values() | sort(attribute='unique_id') -%}
        {%- set monitors = (node.config.meta or {}).get('monitors') if node.resource_type == 'model' -%}
        {%- if monitors and node.config.enabled -%}
            {%- do found.append(dataops_monitor_spec(node, 'model', monitors)) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(found) }}
{%- endmacro %}


{% macro dataops_monitor_spec(node, kind, monitors) -%}
    {%- set declared_in = node.original_file_path if kind == 'source'
        else (node.patch_path or node.original_file_path).split('://')[-1] -%}
    {%- set where = declared_in ~ ": " ~ kind ~ " '"
        ~ ((node.source_name ~ '.') if kind == 'source' else '') ~ node.name ~ "', meta.monitors" -%}
    {%- set known_keys = ['volume', 'freshness', 'columns', 'event_time'] -%}
    {%- set known_metrics = ['null_rate', 'distinct_count', 'min', 'max', 'mean'] -%}
    {%- set numeric_metrics = ['min', 'max', 'mean'] -%}
    {%- if monitors is not mapping -%}
        {{ exceptions.raise_compiler_error(where ~ " is '" ~ monitors
            ~ "': expected a mapping like {volume: true, freshness: true, columns: {amount: [mean]}}.") }}
    {%- endif -%}
    {%- for key in monitors -%}
        {%- if key not in known_keys -%}
            {{ exceptions.raise_compiler_error(where ~ ": unknown key '" ~ key ~ "'; expected one of "
                ~ known_keys | join(', ') ~ ".") }}
        {%- endif -%}
        {%- if key in ['volume', 'freshness'] and monitors[key] is not sameas true and monitors[key] is not sameas false -%}
            {{ exceptions.raise_compiler_error(where ~ "." ~ key ~ " is '" ~ monitors[key]
                ~ "': expected true or false.") }}
        {%- endif -%}
    {%- endfor -%}
    {%- set declared = [] -%}
    {%- set types = {} -%}
    {%- for column in node.columns.values() -%}
        {#- A column staged from an expression need not exist in the raw table as named. -#}
        {%- set column_meta = dict(column.meta or {}) -%}
        {%- do column_meta.update((column.get('config') or {}).get('meta') or {}) -%}
        {%- do declared.append({'name': column.name, 'data_type': column.data_type,
            'expression': column_meta.get('expression') is not none}) -%}
        {%- set staged_name = (column.meta or {}).get('rename') or column.name if kind == 'source' else column.name -%}
        {%- do types.update({staged_name: (column.data_type or '') | lower}) -%}
    {%- endfor -%}
    {%- for derived in (node.meta or {}).get('derived') or [] if kind == 'source' -%}
        {%- do types.update({derived.name: (derived.data_type or '') | lower}) -%}
    {%- endfor -%}
    {%- set columns = monitors.get('columns') or {} -%}
    {%- if columns is not mapping -%}
        {{ exceptions.raise_compiler_error(where ~ ".columns is '" ~ columns
            ~ "': expected a mapping of declared column name to a list of metrics.") }}
    {%- endif -%}
    {%- for name, metrics in columns.items() -%}
        {%- if name not in types -%}
            {{ exceptions.raise_compiler_error(where ~ ".columns: '" ~ name ~ "' is not a staged column; "
                ~ "expected one of " ~ types.keys() | sort | join(', ') ~ ".") }}
        {%- endif -%}
        {%- if metrics is string or metrics is not iterable -%}
            {{ exceptions.raise_compiler_error(where ~ ".columns." ~ name ~ " is '" ~ metrics
                ~ "': expected a list of metrics from " ~ known_metrics | join(', ') ~ ".") }}
        {%- endif -%}
        {%- for metric in metrics -%}
            {%- if metric not in known_metrics -%}
                {{ exceptions.raise_compiler_error(where ~ ".columns." ~ name ~ ": unknown metric '"
                    ~ metric ~ "'; expected one of " ~ known_metrics | join(', ') ~ ".") }}
            {%- endif -%}
            {%- if metric in numeric_metrics and not modules.re.match(
                    '(tinyint|smallint|integer|int|bigint|hugeint|decimal|numeric|double|float|real)',
                    types[name]) -%}
                {{ exceptions.raise_compiler_error(where ~ ".columns." ~ name ~ ": metric '" ~ metric
                    ~ "' needs a numeric column, but its data_type is '" ~ types[name] ~ "'.") }}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {#- event_time: the staged timestamp column dating each record (Elementary's monitors); the
        same rule as registry.py `_is_timestamp_type`. -#}
    {%- set timestamps = [] -%}
    {%- for name, data_type in types.items() if modules.re.match('timestamp', data_type)
            and 'zone' not in data_type and data_type != 'timestamptz' -%}
        {%- do timestamps.append(name) -%}
    {%- endfor -%}
    {%- set event_time = monitors.get('event_time') -%}
    {%- if event_time is not none and (event_time is not string or event_time not in timestamps) -%}
        {{ exceptions.raise_compiler_error(where ~ ".event_time is '" ~ event_time
            ~ "': expected a staged timestamp column (declared: "
            ~ (timestamps | sort | join(', ') or 'none') ~ ").") }}
    {%- endif -%}
    {%- do validate_identifier(node.name, where) -%}
    {%- set freshness = node.freshness or {} if kind == 'source' else {} -%}
    {%- set hours = {'minute': 1 / 60, 'hour': 1, 'day': 24} -%}
    {%- set sla = {} -%}
    {%- for level in ['warn_after', 'error_after'] -%}
        {%- set rule = freshness.get(level) or {} -%}
        {%- if rule.get('count') and rule.get('period') -%}
            {%- do sla.update({level: rule['count'] * hours[rule['period']]}) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set loaded_at_field = node.loaded_at_field if kind == 'source' else none -%}
    {%- if kind == 'source' and (monitors.get('freshness') or monitors.get('volume')) and not loaded_at_field -%}
        {{ exceptions.raise_compiler_error(where ~ ": volume and freshness monitors need the source's "
            ~ "loaded_at_field (config.loaded_at_field: _loaded_at).") }}
    {%- endif -%}
    {%- set staging = graph.nodes.get('model.' ~ project_name ~ '.stg_' ~ node.source_name ~ '__' ~ node.name)
        if kind == 'source' else node -%}
    {#- The declared drift policy (a table's landing overrides its source's), as ingestion reads it. -#}
    {%- set landing = dict((node.source_meta or {}).get('landing') or {}) if kind == 'source' else {} -%}
    {%- if kind == 'source' -%}
        {%- do landing.update((node.meta or {}).get('landing') or {}) -%}
    {%- endif -%}
    {{ return({
        'node_id': node.unique_id,
        'measured_relation': (dataops_published_relation(staging.relation_name)
            if kind == 'source' else staging.relation_name) if staging else none,
        'kind': kind,
        'source_name': node.source_name if kind == 'source' else none,
        'table_name': node.name,
        'relation': node.relation_name,
        'database': node.database,
        'loaded_at_field': loaded_at_field,
        'volume': monitors.get('volume', false),
        'freshness': monitors.get('freshness', false) and kind == 'source',
        'schema': kind == 'source',
        'schema_drift': landing.get('schema_drift', 'additive'),
        'sla_warn_hours': sla.get('warn_after'),
        'sla_error_hours': sla.get('error_after'),
        'declared': declared,
        'columns': columns,
        'event_time': event_time,
    }) }}
{%- endmacro %}
