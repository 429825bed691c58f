{{ stage_source('payments', 'refunds') }}
