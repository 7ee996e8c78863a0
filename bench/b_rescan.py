"""(b) Re-scanning the unchanged day of (a): wall time and documents written.

Runs right after the collector of (a), on its database: the same day is collected again from the same Graph
data. Documents written are counted two ways: from the run's outcome (new + changed, as the ledger records
it) and by comparing every stored document's `_etag` before and after (a rewritten document gets a new one).
"""
from __future__ import annotations

from shared.config.settings import Settings
from shared.stores.clients import cosmos_client

from .a_ingest import Collection, collect
from .common import DAY


def etags(settings: Settings, day: str = DAY.isoformat()) -> dict[str, str]:
    container = cosmos_client(settings).get_database_client(settings.cosmos_database) \
        .get_container_client(settings.container("pstn"))
    items = container.query_items("SELECT c.id, c._etag FROM c WHERE c.day = @day",
                                  parameters=[{"name": "@day", "value": day}], partition_key=day)
    return {item["id"]: item["_etag"] for item in items}


def measure(mode: str, settings: Settings, first: Collection, figures) -> Collection:
    """Collect the day of `first` again on the same stores; record time, ratio and documents written."""
    before = etags(settings)
    again = collect(settings)
    after = etags(settings)
    rewritten = sum(1 for key, tag in after.items() if before.get(key) != tag)
    figures.get("b.rescan", "(b) re-scan of the unchanged day", "s").add(mode, again.seconds)
    figures.get("b.written", "(b) re-scan: documents written (ledger new+changed)", "docs", target="== 0",
                target_mode="all").add(mode, again.new + again.changed)
    figures.get("b.etags", "(b) re-scan: documents whose _etag changed", "docs", target="== 0",
                target_mode="all").add(mode, rewritten)
    figures.get("b.ratio", "(b) re-scan time / collector time of (a)", "ratio", target="<= 0.2").add(
        mode, again.seconds / first.seconds)
    figures.get("b.cpu", "(b) re-scan: CPU per 1,000 rows (its process)", "s").add(
        mode, again.cpu_seconds / again.rows * 1000)
    return again
