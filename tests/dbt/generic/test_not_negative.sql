{#- Rows where the column is below zero fail the test (nulls pass; pair with not_null). -#}
{% test not_negative(model, column_name) %}

select * from {{ model }}
where {{ column_name }} < 0

{% endtest %}
