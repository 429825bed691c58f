"""Alerts: a JSON POST to ``ALERT_WEBHOOK_URL`` (Slack/Teams-style incoming hooks or any HTTP
endpoint), used for failed Dagster runs and failed release audits alike."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from dataops.core.secrets import read_secret

ALERT_WEBHOOK_ENV = "ALERT_WEBHOOK_URL"


def post_webhook(url: str, payload: dict[str, Any], timeout: float = 10.0) -> str:
    """POST the payload as JSON; return "sent (<status>)" or "failed: <reason>" (never raises)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, default=str).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return f"sent ({response.status})"
    except (urllib.error.URLError, OSError) as error:
        return f"failed: {error}"


def post_alert(payload: dict[str, Any]) -> str | None:
    """Post to ALERT_WEBHOOK_URL when it is set; None when no webhook is configured."""
    url = read_secret(ALERT_WEBHOOK_ENV)  # or the file named by ALERT_WEBHOOK_URL_FILE
    return post_webhook(url, payload) if url else None
