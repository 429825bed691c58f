{#-
    Read one table's declaration from the source registry (the sources YAML) out of the graph.
    Returns a dict with validated, ready-to-quote names:
      {source_name, table_name, primary_key, latest_by, columns: [{name, staged_name, data_type,
       is_pii, is_string}], derived: [{name, expression, data_type}]}
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
    {%- set meta = node.meta or {} -%}
    {%- set where = "Model '" ~ model.name ~ "', source '" ~ source_name ~ "." ~ table_name ~ "'" -%}

    {%- set columns = [] -%}
    {%- set staged_names = [] -%}
    {%- for column in node.columns.values() -%}
        {%- set column_meta = column.meta or {} -%}
        {%- set staged_name = column_meta.get('rename', column.name) -%}
        {%- do validate_identifier(column.name, where ~ ", column") -%}
        {%- do validate_identifier(staged_name, where ~ ", column '" ~ column.name ~ "' rename") -%}
        {%- if not column.data_type -%}
            {{ exceptions.raise_compiler_error(
                where ~ ", column '" ~ column.name ~ "': data_type is missing. "
                ~ "Declare the type the staging model casts to, e.g. data_type: bigint.") }}
        {%- endif -%}
        {%- do validate_data_type(column.data_type, where ~ ", column '" ~ column.name ~ "'") -%}
        {%- do staged_names.append(staged_name) -%}
        {%- do columns.append({
            'name': column.name,
            'staged_name': staged_name,
            'data_type': column.data_type,
            'is_pii': column_meta.get('pii', false) is true,
            'is_string': column.data_type | lower in ('varchar', 'text', 'string'),
        }) -%}
    {%- endfor -%}
    {%- if columns | length == 0 -%}
        {{ exceptions.raise_compiler_error(where ~ ": no columns are declared. "
            ~ "List the columns to stage under `columns:` in the sources YAML.") }}
    {%- endif -%}

    {%- set primary_key = meta.get('primary_key') -%}
    {%- if primary_key is none or primary_key not in staged_names -%}
        {{ exceptions.raise_compiler_error(
            where ~ ": meta.primary_key is " ~ (primary_key | string)
            ~ "; expected one of the staged column names " ~ (staged_names | join(', ')) ~ ".") }}
    {%- endif -%}
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
    }) }}
{%- endmacro %}
