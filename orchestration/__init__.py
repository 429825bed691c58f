"""DataOps platform: ingestion, dbt orchestration and observability around one dbt project."""
