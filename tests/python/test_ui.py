"""`make ui` for real: the Dagster webserver and daemon on 127.0.0.1 with the repo's instance
config, queried over GraphQL, running a landed file, and the asset lineage rendered in headless
Chromium (the Debian package, installed by `make system-deps`), driven over the DevTools
protocol. The screenshot is kept in the test's temp folder (printed at the end of the test) as
an artefact."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.python.browser import chromium_page
from tests.python.dagster_harness import (
    ProcessGroup,
    clone_home,
    dagster_env,
    extra_sessions,
    free_port,
    graphql,
    wait_for,
)

pytestmark = pytest.mark.slow

# The marts group's lineage: its dbt models as nodes, their upstream staging models as links (the
# global lineage page shows the layers as collapsed groups).
LINEAGE_PATH = "/locations/__repository__@orchestration.definitions/asset-groups/marts/lineage"
DBT_ASSETS_SHOWN = ("fct_orders", "dim_customers", "fct_order_items", "stg_shop__orders")

ASSET_NODES = "{ assetNodes { assetKey { path } groupName isMaterializable } }"
RUNS = """
query Runs($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) { ... on Runs { results { runId status tags { key value } } } }
}
"""


def stop_group(pgid: int, grace: float = 30) -> None:
    """Stop the webserver/daemon group `make ui` started, if it outlived make (by its group id)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)


class Ui:
    def __init__(self, home: Path, port: int, process: ProcessGroup):
        self.home, self.port, self.process = home, port, process
        self.url = f"http://127.0.0.1:{port}"

    def gql(self, query: str, variables: dict | None = None) -> dict:
        return graphql(self.port, query, variables)

    def up(self) -> bool:
        assert self.process.alive(), f"make ui exited:\n{self.process.tail()}"
        try:
            nodes = self.gql(ASSET_NODES)["assetNodes"]
        except OSError:
            return False
        return bool(nodes)


@pytest.fixture(scope="module")
def ui(dagster_platform: Path, tmp_path_factory) -> Iterator[Ui]:
    home = clone_home(dagster_platform, tmp_path_factory.mktemp("ui") / "home")
    port = free_port()
    # Nothing pre-installed: `make ui` prepares the manifest and copies the instance config.
    env = dagster_env(home, home / "dagster_home")
    process = ProcessGroup(
        ["make", "--no-print-directory", "ui", f"UI_PORT={port}"], env, home / "ui.log"
    )
    ui = Ui(home, port, process)
    try:
        wait_for("the Dagster webserver to answer GraphQL", ui.up, interval=2)
        yield ui
    finally:
        pid_file = home / "dagster_home" / "ui.pid"
        dagster_group = int(pid_file.read_text()) if pid_file.exists() else None
        process.stop(first=signal.SIGTERM)  # make's recipe forwards it to the dagster group
        if dagster_group:
            stop_group(dagster_group)


def test_make_ui_serves_the_asset_graph_over_graphql(ui):
    nodes = {"/".join(n["assetKey"]["path"]): n for n in ui.gql(ASSET_NODES)["assetNodes"]}
    assert {"landing/shop/orders", "raw/shop/orders", "staging/stg_shop__orders"} <= set(nodes)
    assert {"marts/fct_orders", "marts/fct_order_items", "reference/country_codes"} <= set(nodes)
    assert nodes["marts/fct_orders"]["groupName"] == "marts"
    assert not nodes["landing/shop/orders"]["isMaterializable"]
    assert (ui.home / "dagster_home" / "dagster.yaml").read_text() == (
        Path(__file__).resolve().parents[2] / "orchestration" / "instance" / "dagster.yaml"
    ).read_text()


def test_a_file_dropped_in_the_landing_folder_runs_to_success(ui):
    extra_sessions(ui.home / "archive", ui.home / "landing", 1)
    tags = [{"key": "dataops/source", "value": "web"}]

    def finished_run():
        runs = ui.gql(RUNS, {"tags": tags})["runsOrError"]["results"]
        done = [r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
        return done[0] if done else None

    run = wait_for("the landing run to finish", finished_run, interval=2)
    assert run["status"] == "SUCCESS"


def render_in_chromium(url: str, wanted: tuple[str, ...], screenshot: Path, work: Path) -> str:
    """Open ``url`` in headless Chromium (driven over the DevTools protocol), wait until the page
    shows every ``wanted`` text, save a PNG screenshot and return the page's HTML."""
    with chromium_page(work) as page:
        page.call("Page.navigate", url=url)
        html = ""

        def rendered() -> str | None:
            nonlocal html
            html = page.html() or ""
            return html if all(text in html for text in wanted) else None

        try:
            wait_for(f"{url} to render {wanted}", rendered, interval=2)
        except AssertionError as error:
            raise AssertionError(f"{error}; the page holds:\n{html[-3000:]}") from None
        time.sleep(3)  # let the graph layout settle before the picture
        page.screenshot(screenshot)
        return html


def test_the_asset_lineage_renders_the_dbt_assets_in_chromium(ui, tmp_path):
    assert ui.gql("mutation { setNuxSeen }")["setNuxSeen"] is True  # the community pop-up
    screenshot = tmp_path / "asset-lineage.png"
    html = render_in_chromium(ui.url + LINEAGE_PATH, DBT_ASSETS_SHOWN, screenshot, tmp_path)
    assert "Asset Group" in html
    assert screenshot.stat().st_size > 20_000  # a rendered graph, not a blank page
    print(f"asset lineage screenshot: {screenshot}")
