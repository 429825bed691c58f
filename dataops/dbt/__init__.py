"""The one owner of invoking dbt: executable, arguments, environment, in-process or subprocess
runs, and the prepared manifest."""
