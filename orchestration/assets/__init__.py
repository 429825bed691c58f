"""Dagster assets: landed files and raw tables (ingestion) upstream of the dbt graph."""
