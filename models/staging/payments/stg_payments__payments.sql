{{ stage_source('payments', 'payments') }}
