{#- Fail unless `timezone` is an IANA time zone name such as UTC or Europe/Berlin. -#}
{% macro validate_timezone(timezone, where) -%}
    {%- if timezone is not string or timezone not in modules.pytz.all_timezones_set -%}
        {{ exceptions.raise_compiler_error(
            where ~ ": timezone '" ~ (timezone | string) ~ "' is not a time zone: expected an "
            ~ "IANA name such as UTC, Europe/Berlin or America/New_York.") }}
    {%- endif -%}
{%- endmacro %}
