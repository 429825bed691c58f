{{ stage_source('shop', 'orders') }}
