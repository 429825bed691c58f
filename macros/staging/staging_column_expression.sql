{#-
    The SQL that stages one declared column (a column as returned by source_declaration), in order:
      1. the raw column (quoted) or its declared `expression`;
      2. as text: trim, an empty string becomes null (strings by default, or `trim: true`),
         lower/upper (`case`), coded values mapped (`values_map`; unmapped values pass unchanged);
      3. cast to `data_type`, or try-cast (`safe_cast`; failures are counted by
         staging_cast_failure), never changing a value's meaning (staging_cast: no rounding, offsets
         converted to UTC, out-of-range values fail);
      4. a timestamp delivered in another zone (`timezone`) is converted to UTC;
      5. a PII column is hashed (dbt's cross-database hash).
-#}
{% macro staging_column_expression(column) -%}
    {%- set text = staging_column_text(column) -%}
    {%- if column.is_string -%}
        {%- set expression = text -%}
    {%- else -%}
        {%- set expression = staging_cast(text, column.data_type, column.safe_cast,
            column.timezone) -%}
    {%- endif -%}
    {%- if column.is_pii -%}
        {%- set expression = dbt.hash(expression) | trim -%}
    {%- endif -%}
    {{- return(expression) -}}
{%- endmacro %}

{#- Steps 1 and 2 of staging_column_expression: the raw value, prepared as text when asked. -#}
{% macro staging_column_text(column) -%}
    {%- set expression = column.expression if column.expression else adapter.quote(column.name) -%}
    {%- set as_text = column.is_string or column.trim or column.case or column.values_map -%}
    {%- if not as_text -%}
        {{- return(expression) -}}
    {%- endif -%}
    {%- set expression = 'cast(' ~ expression ~ ' as ' ~ dbt.type_string() ~ ')' -%}
    {%- if column.trim -%}
        {%- set expression = "nullif(trim(" ~ expression ~ "), '')" -%}
    {%- endif -%}
    {%- if column.case -%}
        {%- set expression = column.case ~ '(' ~ expression ~ ')' -%}
    {%- endif -%}
    {%- if column.values_map -%}
        {%- set branches = [] -%}
        {%- for code, value in column.values_map -%}
            {%- do branches.append('when ' ~ staging_literal(code) ~ ' then ' ~ staging_literal(value)) -%}
        {%- endfor -%}
        {%- set expression = 'case ' ~ expression ~ ' ' ~ branches | join(' ')
            ~ ' else ' ~ expression ~ ' end' -%}
    {%- endif -%}
    {{- return(expression) -}}
{%- endmacro %}

{#- 1 when a safe-cast column had a value that did not convert (so the cast gave null), else 0. -#}
{% macro staging_cast_failure(column) -%}
    {%- set text = staging_column_text(column) -%}
    {{- return('case when ' ~ text ~ ' is not null and '
        ~ staging_cast(text, column.data_type, true) ~ ' is null then 1 else 0 end') -}}
{%- endmacro %}
