"""Asset checks that are not dbt tests (dbt tests become asset checks through dagster-dbt)."""
