{{ stage_source('shop', 'products') }}
