{#- Rows for which `expression` is not true fail the test. -#}
{% test expression_is_true(model, expression) %}

select * from {{ model }}
where not ({{ expression }})

{% endtest %}
