"""The platform library behind the `dataops` command line, one sub-package per concern.

Imports run top-down only, by layer (tests/python/test_layout.py checks it); a package imports
its own modules and packages of lower layers, never one beside or above it:

4. ``dataops.cli`` (the command line) and the Dagster code location ``orchestration/``;
3. ``engines`` (Spark and PostgreSQL: loads raw tables with ingestion's readers), ``cicd``
   (PR environments, deploy: publishes through ``publishing``);
2. ``ingestion``, ``observability``, ``rules``, ``publishing`` (write -> audit -> publish,
   releases, rollback);
1. ``sources`` (registry, sync, onboarding), ``dbt`` (the one owner of invoking dbt),
   ``sample_data``;
0. ``core``: settings, warehouse access, the event log and SQL quoting, used by all.
"""
