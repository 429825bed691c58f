{{ stage_source('web', 'sessions') }}
