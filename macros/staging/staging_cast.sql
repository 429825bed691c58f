{#-
    Cast one staged value to its declared type without changing its meaning
    (docs/source-declarations.md, "Casting rules"). `safe`: a value that does not convert gives
    null (staging counts it in `_cast_failures`). `timezone`: the zone a timestamp without offset
    was written in (converted to UTC). Dispatched. The default is a plain cast (or
    staging_safe_cast) then staging_to_utc. On DuckDB, mirroring validation.strict_cast
    (dataops/ingestion/validation.py), which quarantines a file with such a value in a column that
    is not safe-cast before it reaches a raw table (so a plain cast is exact there):
      - integers (safe): a fractional value ('1.5') is a failure, never rounded; '2.0' is 2;
      - decimal(p, s) (safe): more than s significant decimals is a failure, never rounded;
      - float/double (safe): a finite value out of range (becoming infinite) is a failure;
      - timestamp: a value with an offset or zone ('...+02:00', 'Z', 'Europe/Paris') is converted
        to UTC from that offset; a value without one is read in `timezone` (or UTC).
-#}
{% macro staging_cast(expression, data_type, safe=false, timezone=none) -%}
    {{ return(adapter.dispatch('staging_cast', 'dataops')(expression, data_type, safe, timezone)) }}
{%- endmacro %}

{% macro default__staging_cast(expression, data_type, safe, timezone) -%}
    {%- if safe -%}
        {%- set cast = staging_safe_cast(expression, data_type) -%}
    {%- else -%}
        {%- set cast = 'cast(' ~ expression ~ ' as ' ~ data_type ~ ')' -%}
    {%- endif -%}
    {{ return(staging_to_utc(cast, timezone) if timezone else cast) }}
{%- endmacro %}

{% macro duckdb__staging_cast(expression, data_type, safe, timezone) -%}
    {%- set kind = data_type | lower | replace(' ', '') -%}
    {%- set text = 'cast(' ~ expression ~ ' as varchar)' -%}
    {%- set cast_word = 'try_cast' if safe else 'cast' -%}
    {%- set decimal = modules.re.match('^(decimal|numeric)(\\((\\d+),(\\d+)\\))?$', kind) -%}
    {%- set condition = none -%}
    {%- if kind in ['tinyint', 'smallint', 'integer', 'int', 'bigint', 'hugeint', 'utinyint',
        'usmallint', 'uinteger', 'ubigint', 'uhugeint', 'int1', 'int2', 'int4', 'int8', 'long',
        'short', 'signed'] -%}
        {%- set condition = "regexp_full_match(" ~ text ~ ", ' *[+-]?[0-9]+([.]0*)? *')" -%}
    {%- elif decimal -%}
        {%- set scale = (decimal.group(4) or '3') | int -%}
        {%- if scale == 0 -%}
            {%- set pattern = ' *[+-]?[0-9]+([.]0*)? *' -%}
        {%- else -%}
            {%- set pattern = ' *[+-]?([0-9]+([.][0-9]{0,' ~ scale ~ '}0*)?|[.][0-9]{1,'
                ~ scale ~ '}0*) *' -%}
        {%- endif -%}
        {%- set condition = "regexp_full_match(" ~ text ~ ", '" ~ pattern ~ "')" -%}
    {%- elif kind in ['double', 'float', 'real', 'float4', 'float8'] -%}
        {%- set condition = "(not isinf(try_cast(" ~ text ~ " as " ~ data_type ~ ")) or "
            ~ "regexp_matches(lower(" ~ text ~ "), 'inf'))" -%}
    {%- elif kind in ['timestamp', 'datetime'] -%}
        {%- set naive = cast_word ~ '(' ~ expression ~ ' as ' ~ data_type ~ ')' -%}
        {%- if timezone -%}
            {%- set naive = staging_to_utc(naive, timezone) -%}
        {%- endif -%}
        {{ return("case when regexp_matches(" ~ text ~ ", '" ~ staging_offset_pattern()
            ~ "') then timezone('UTC', " ~ cast_word ~ "(" ~ text ~ " as timestamptz)) else "
            ~ naive ~ " end") }}
    {%- endif -%}
    {%- if condition is none or not safe -%}
        {{ return(cast_word ~ '(' ~ expression ~ ' as ' ~ data_type ~ ')') }}
    {%- else -%}
        {{ return('case when ' ~ condition ~ ' then try_cast(' ~ expression ~ ' as ' ~ data_type
            ~ ') end') }}
    {%- endif -%}
{%- endmacro %}

{#- A time followed by an offset or a zone name: such a timestamp is converted from it to UTC. -#}
{% macro staging_offset_pattern() -%}
    {{ return('(?i)[0-9]:[0-9]{2}(:[0-9]{2}([.][0-9]*)?)? *'
        ~ '(z|[+-][0-9]{2}(:?[0-9]{2})?|utc|gmt|[a-z]+/[a-z_/+-]+) *$') }}
{%- endmacro %}
