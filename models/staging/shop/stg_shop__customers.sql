{{ stage_source('shop', 'customers') }}
