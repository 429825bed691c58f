"""Publishing: write -> audit -> publish, releases and rollback (SQLMesh-style virtual layer).

Every write to a published warehouse (``dataops deploy``, the daily build and the Dagster runs
of the prod code location) is a *release*: dbt builds the selection into the release's own
physical schemas (``<schema>__r<id>``, where readers do not look) and runs every test there;
only when all pass are the published relations (``marts.fct_orders``: the names readers query)
re-pointed, as views, to the release's relations, in one transaction. The ``releases`` module
keeps the state (``platform.releases``); ``wap`` runs a release build end to end.
"""
