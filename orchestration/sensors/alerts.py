"""Failure alerting: every failed run is recorded in the platform event log and, when
``ALERT_WEBHOOK_URL`` is set, posted to that webhook as JSON (Slack/Teams-style incoming hooks or
any HTTP endpoint)."""

from typing import Any

import duckdb
from dagster import DefaultSensorStatus, RunFailureSensorContext, run_failure_sensor

from dataops.core import events
from dataops.core.alerts import ALERT_WEBHOOK_ENV, post_webhook
from dataops.core.secrets import read_secret
from dataops.core.settings import load_settings
from dataops.core.warehouse import with_warehouse_lock_retry
from orchestration.sensors.landing import FILES_TAG, SOURCE_TAG

EVENT_TYPE = "dagster.run_failed"


def alert_payload(context: RunFailureSensorContext) -> dict[str, Any]:
    run = context.dagster_run
    failed_steps = [
        {"step": event.step_key, "error": event.message}
        for event in context.get_step_failure_events()
    ]
    return {
        "event_type": EVENT_TYPE,
        "run_id": run.run_id,
        "job_name": run.job_name,
        "message": context.failure_event.message,
        "source": run.tags.get(SOURCE_TAG),
        "files": run.tags.get(FILES_TAG),
        "failed_steps": failed_steps,
        "text": (
            f"Dagster run {run.run_id} ({run.job_name}) failed: {context.failure_event.message}"
        ),
    }


def record_failure(payload: dict[str, Any], webhook: str | None) -> str:
    settings = load_settings()

    def write() -> str:
        settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
        with duckdb.connect(str(settings.warehouse_path)) as con:
            events.ensure_events(con)
            return events.record_event(
                con,
                EVENT_TYPE,
                status="error",
                source_name=payload.get("source"),
                dagster_run_id=payload["run_id"],
                message=payload["message"],
                details={
                    "job_name": payload["job_name"],
                    "files": payload.get("files"),
                    "failed_steps": payload["failed_steps"],
                    "webhook": webhook,
                },
            )

    return with_warehouse_lock_retry(write)


@run_failure_sensor(
    name="run_failure_alert",
    minimum_interval_seconds=5,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        f"Records each failed run as a `{EVENT_TYPE}` event; posts it to ${ALERT_WEBHOOK_ENV}."
    ),
)
def run_failure_alert(context: RunFailureSensorContext) -> None:
    payload = alert_payload(context)
    url = read_secret(ALERT_WEBHOOK_ENV)  # or the file named by ALERT_WEBHOOK_URL_FILE
    webhook = post_webhook(url, payload) if url else None
    if webhook and webhook.startswith("failed"):
        # The URL is a credential: name the variable, never its value.
        context.log.warning(f"Alert webhook ${ALERT_WEBHOOK_ENV} {webhook}")
    record_failure(payload, webhook)
