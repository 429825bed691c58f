"""Every path and environment setting of the platform, resolved in one place.

The dbt profile (``profiles/profiles.yml``) reads the same environment variables, so Python and
dbt always agree on which warehouse file a target uses (``dataops.dbt.runner.dbt_env`` passes
them on to dbt). Nothing here touches the disk on import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_DIR = REPO_ROOT  # the dbt project lives at the repo root
PROFILES_DIR = REPO_ROOT / "profiles"
TARGETS = ("dev", "ci", "prod")
# Targets whose warehouse is published to readers: their home must be stated, absolute.
PUBLISHED_TARGETS = ("prod",)


class SettingsError(ValueError):
    """A setting cannot be used as given; the message names the variable and what to set."""


@dataclass(frozen=True)
class Settings:
    """Resolved locations for one target (dev, ci or prod)."""

    home: Path
    landing_dir: Path
    target: str

    @property
    def warehouse_path(self) -> Path:
        override = os.environ.get(f"DATAOPS_WAREHOUSE_{self.target.upper()}")
        if override:
            return Path(override).resolve()
        # Not named like a schema: `dev.duckdb` + schema `dev` makes references ambiguous.
        return self.home / f"warehouse_{self.target}.duckdb"

    @property
    def dbt_target_path(self) -> Path:
        return Path(os.environ.get("DBT_TARGET_PATH", REPO_ROOT / "target")).resolve()


def load_settings(target: str | None = None) -> Settings:
    """Read the settings from the environment.

    ``DATAOPS_HOME``, ``DATAOPS_LANDING`` and ``DBT_TARGET``.
    """
    target = target or os.environ.get("DBT_TARGET", "dev")
    if target not in TARGETS:
        raise SettingsError(f"Unknown target {target!r}: expected one of {', '.join(TARGETS)}.")
    raw_home = os.environ.get("DATAOPS_HOME")
    if target in PUBLISHED_TARGETS and raw_home is not None and not Path(raw_home).is_absolute():
        # An unset CI variable arrives as "" and would put prod's warehouse inside the checkout.
        raise SettingsError(
            f"DATAOPS_HOME={raw_home!r} for the {target} target: set it to an absolute folder "
            "that outlives the checkout (e.g. /srv/dataops), or unset it to use "
            f"{REPO_ROOT / '.dataops'} on a developer machine."
        )
    home = Path(raw_home or REPO_ROOT / ".dataops").resolve()
    landing = Path(os.environ.get("DATAOPS_LANDING", home / "landing")).resolve()
    return Settings(home=home, landing_dir=landing, target=target)
