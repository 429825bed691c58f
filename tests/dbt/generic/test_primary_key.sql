{#-
    The primary key of a model, one column or several: every row has a value in each key column
    and no combination of values occurs twice. One query (one scan) replaces `unique` +
    `not_null` on a one-column key and tests a composite key as a whole:
        data_tests:
          - primary_key:
              arguments: {columns: [supply_id, sku]}
    Each failing row names the key values, how many rows share them and why it fails.
-#}
{% test primary_key(model, columns) %}
with

final as (

    {{ dataops_primary_key_failures(model, columns, "Test primary_key on '" ~ model ~ "'")
        | indent(4) }}

)

select * from final

{% endtest %}
