"""Observability: the static report over the event log and metric history, and the Elementary path.

The event log and the metric history themselves are written by ingestion (dataops/core/events.py)
and by the dbt hooks in macros/observability/; the monitors are dbt generic tests.
"""
