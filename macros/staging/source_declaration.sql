{#-
    Read one table's declaration from the source registry (the sources YAML) out of the graph and
    validate it (the same rules as dataops/sources/registry.py). Returns a dict whose names, types,
    literals and expressions are checked and ready to quote:
      {source_name, table_name, primary_key (a list of staged names), latest_by, has_safe_casts,
       columns: [{name, staged_name, data_type, is_pii, is_string, is_timestamp, expression,
                  trim, case, values_map: [(code, value)], safe_cast, timezone}],
       derived: [{name, expression, data_type}]}
    Fails with a compiler error naming the model when the declaration is missing or wrong.
-#}
{% macro source_declaration(source_name, table_name) -%}
    {%- set unique_id = 'source.' ~ project_name ~ '.' ~ source_name ~ '.' ~ table_name -%}
    {%- set node = graph.sources.get(unique_id) -%}
    {%- if node is none -%}
        {{ exceptions.raise_compiler_error(
            "Model '" ~ model.name ~ "': no source table '" ~ source_name ~ "." ~ table_name
            ~ "' is declared. Declare it in models/staging/" ~ source_name ~ "/_" ~ source_name
            ~ "__sources.yml (see docs/source-declarations.md).") }}
    {%- endif -%}
    {#- node.meta merges the source's meta with the table's (the table wins). -#}
    {%- set meta = node.meta or {} -%}
    {%- set where = "Model '" ~ model.name ~ "', source '" ~ source_name ~ "." ~ table_name ~ "'" -%}
    {%- set string_types = ('varchar', 'text', 'string') -%}
    {%- set table_timezone = meta.get('timezone') -%}
    {%- if table_timezone is not none -%}
        {%- do validate_timezone(table_timezone, where ~ ", meta") -%}
    {%- endif -%}
    {%- set table_safe_cast = meta.get('safe_cast', false) is true -%}

    {%- set columns = [] -%}
    {%- set staged_names = [] -%}
    {%- for column in node.columns.values() -%}
        {%- set column_meta = dict(column.get('meta') or {}) -%}
        {%- do column_meta.update((column.get('config') or {}).get('meta') or {}) -%}
        {%- set at = where ~ ", column '" ~ column.name ~ "'" -%}
        {%- do validate_identifier(column.name, where ~ ", column", source_column=true) -%}
        {%- set staged_name = column_meta.get('rename', column.name) -%}
        {%- do validate_identifier(staged_name, at ~ (" rename" if 'rename' in column_meta
            else " needs meta.rename: its name")) -%}
        {%- if not column.data_type -%}
            {{ exceptions.raise_compiler_error(at ~ ": data_type is missing. "
                ~ "Declare the type the staging model casts to, e.g. data_type: bigint.") }}
        {%- endif -%}
        {%- do validate_data_type(column.data_type, at) -%}
        {%- set data_type = column.data_type | lower -%}
        {%- set is_string = data_type in string_types -%}
        {%- set is_timestamp = data_type.startswith('timestamp') and data_type != 'timestamptz'
            and 'zone' not in data_type -%}
        {%- set is_pii = column_meta.get('pii', false) is true -%}
        {%- if is_pii and not is_string -%}
            {{ exceptions.raise_compiler_error(at ~ ": pii columns are hashed to a string; "
                ~ "data_type is " ~ data_type ~ ", expected varchar.") }}
        {%- endif -%}
        {%- if column_meta.get('expression') is not none -%}
            {%- do validate_expression(column_meta.expression, at) -%}
        {%- endif -%}
        {%- set case = column_meta.get('case') -%}
        {%- if case is not none and (case not in ('lower', 'upper') or not is_string) -%}
            {{ exceptions.raise_compiler_error(at ~ ": meta.case is '" ~ case
                ~ "'; expected lower or upper on a varchar column.") }}
        {%- endif -%}
        {%- set values_map = [] -%}
        {%- for code, value in (column_meta.get('values_map') or {}).items() -%}
            {%- do validate_literal(code, at ~ ", values_map code") -%}
            {%- do validate_literal(value, at ~ ", values_map value") -%}
            {%- do values_map.append((code | string, value | string)) -%}
        {%- endfor -%}
        {%- for value in column_meta.get('accepted_values') or [] -%}
            {%- do validate_literal(value, at ~ ", accepted value") -%}
        {%- endfor -%}
        {%- set timezone = column_meta.get('timezone', table_timezone) if is_timestamp else none -%}
        {%- if column_meta.get('timezone') is not none -%}
            {%- do validate_timezone(column_meta.timezone, at) -%}
            {%- if not is_timestamp -%}
                {{ exceptions.raise_compiler_error(at ~ ": meta.timezone is set on data_type "
                    ~ data_type ~ "; expected a timestamp column.") }}
            {%- endif -%}
        {%- endif -%}
        {%- set safe_cast = column_meta.get('safe_cast', table_safe_cast) is true and not is_string -%}
        {%- do staged_names.append(staged_name) -%}
        {%- do columns.append({
            'name': column.name,
            'staged_name': staged_name,
            'data_type': column.data_type,
            'is_pii': is_pii,
            'is_string': is_string,
            'is_timestamp': is_timestamp,
            'expression': column_meta.get('expression'),
            'trim': column_meta.get('trim', is_string) is true,
            'case': case,
            'values_map': values_map,
            'safe_cast': safe_cast,
            'timezone': none if timezone in (none, 'UTC') else timezone,
        }) -%}
    {%- endfor -%}
    {%- if columns | length == 0 -%}
        {{ exceptions.raise_compiler_error(where ~ ": no columns are declared. "
            ~ "List the columns to stage under `columns:` in the sources YAML.") }}
    {%- endif -%}
    {%- for name in staged_names if staged_names.count(name) > 1 or name.startswith('_') and name in
        ('_file_name', '_file_hash', '_batch_id', '_loaded_at', '_cast_failures') -%}
        {{ exceptions.raise_compiler_error(where ~ ": staged column name '" ~ name
            ~ "' is declared twice or reserved for the platform; expected a unique rename.") }}
    {%- endfor -%}

    {#- primary_key: one column, or a list of columns (a composite key). -#}
    {%- set declared_key = meta.get('primary_key') -%}
    {%- set primary_key = [declared_key] if declared_key is string else (declared_key or []) -%}
    {%- if primary_key is not iterable or primary_key is mapping or primary_key | length == 0 -%}
        {%- set primary_key = [none] -%}
    {%- endif -%}
    {%- for key_column in primary_key if key_column not in staged_names
        or primary_key.count(key_column) > 1 -%}
        {{ exceptions.raise_compiler_error(
            where ~ ": meta.primary_key is " ~ (declared_key | string)
            ~ "; expected one of the staged column names " ~ (staged_names | join(', '))
            ~ ", or a list of distinct ones.") }}
    {%- endfor -%}
    {%- set latest_by = (meta.get('dedupe') or {}).get('latest_by') -%}
    {%- if latest_by is not none and latest_by not in staged_names -%}
        {{ exceptions.raise_compiler_error(
            where ~ ": meta.dedupe.latest_by is '" ~ latest_by
            ~ "'; expected one of the staged column names " ~ (staged_names | join(', ')) ~ ".") }}
    {%- endif -%}

    {%- set derived = [] -%}
    {%- for item in meta.get('derived') or [] -%}
        {%- do validate_identifier(item.get('name'), where ~ ", derived column") -%}
        {%- if not item.get('expression') or not item.get('data_type') -%}
            {{ exceptions.raise_compiler_error(where ~ ", derived column '" ~ item.get('name')
                ~ "': both `expression` and `data_type` are required.") }}
        {%- endif -%}
        {%- do validate_expression(item.expression, where ~ ", derived column '" ~ item.name ~ "'") -%}
        {%- do validate_data_type(item.data_type, where ~ ", derived column '" ~ item.name ~ "'") -%}
        {%- do derived.append(item) -%}
    {%- endfor -%}

    {{ return({
        'source_name': source_name,
        'table_name': table_name,
        'primary_key': primary_key,
        'latest_by': latest_by,
        'columns': columns,
        'derived': derived,
        'has_safe_casts': columns | selectattr('safe_cast') | list | length > 0,
    }) }}
{%- endmacro %}
