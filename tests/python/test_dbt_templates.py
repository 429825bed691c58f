"""A preloaded process compiles, while it waits, every macro template its build will call
(dataops/dbt/templates.py): the build itself then compiles none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dataops.core.settings import REPO_ROOT
from tests.python.conftest import platform_env

# Run in a new process: a test process may hold templates compiled by earlier tests.
SCRIPT = """
import json, os, sys
from pathlib import Path
from dbt_common.clients.jinja import template_cache
from dataops.dbt.preloaded import preload
from dataops.dbt.runner import invoke

project = Path(sys.argv[1])
parsed = preload(project, project / "profiles", "dev")
ahead = set(template_cache.file_cache)
result = invoke(["build", "--target", "dev", "--no-write-json"], dict(os.environ),
                manifest=parsed.manifest)
names = {macro.macro_sql: unique_id for unique_id, macro in parsed.manifest.macros.items()}
late = sorted(names.get(sql, "?") for sql in set(template_cache.file_cache) - ahead)
print(json.dumps({"success": result.success, "ahead": len(ahead), "late": late}))
"""


def test_a_build_on_the_preloaded_manifest_compiles_no_macro_template_itself(
    platform_copy: Path,
):
    env = platform_env(platform_copy)
    env["DBT_PROFILES_DIR"] = str(REPO_ROOT / "profiles")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(REPO_ROOT)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["success"], done.stdout[-3000:]
    assert figures["ahead"] > 100, figures  # materialisations, adapter macros, hooks, tests
    assert figures["late"] == [], f"compiled only when the build called them: {figures['late']}"
