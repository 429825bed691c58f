{#- The relation's and its columns' comments in one statement, after one column lookup.
    dbt's default__persist_docs with dbt-duckdb's alter_column_comment runs four: the table
    comment, two identical column lookups (each through adapter.get_columns_in_relation, which
    builds a whole macro context) and the column comments: ~4 statements of each model's ~14,
    paid by every model of every build (docs/benchmarks.md "Main job"). Same comments, same
    warning for a documented column that the relation does not have (validate_doc_columns),
    same rule as dbt-duckdb for which columns are commented (an exact name match). -#}
{% macro duckdb__persist_docs(relation, model, for_relation, for_columns) -%}
    {%- set comments = [] -%}
    {%- if for_relation and config.persist_relation_docs() and model.description -%}
        {%- do comments.append(alter_relation_comment(relation, model.description)) -%}
    {%- endif -%}
    {%- if for_columns and config.persist_column_docs() and model.columns -%}
        {%- set described = run_query('select column_name from (describe ' ~ relation ~ ')') -%}
        {%- set existing = described.columns[0].values() | list -%}
        {%- set documented = validate_doc_columns(relation, model.columns, existing) -%}
        {%- for name in documented if name in existing -%}
            {%- set column = adapter.quote(name) if documented[name]['quote'] else name -%}
            {%- do comments.append(
                'comment on column ' ~ relation ~ '.' ~ column ~ ' is '
                ~ duckdb_escape_comment(documented[name]['description']) ~ ';'
            ) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if comments -%}
        {%- do run_query(comments | join('\n')) -%}
    {%- endif -%}
{%- endmacro %}
