{{ stage_source('shop', 'order_items') }}
