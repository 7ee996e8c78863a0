"""The summaries container (partition key /day), shared by the feeds: a day's summary documents of a feed,
replaced as a whole when the day's rows change."""
from __future__ import annotations

from .calls import BATCH_OPERATIONS


class SummaryStore:
    def __init__(self, container_client):
        self._container = container_client

    def replace_day(self, feed: str, day: str, fresh: list[dict]) -> int:
        """Make the feed's summaries of a UTC day exactly `fresh`: upsert those, delete the rest. Returns how
        many there are now."""
        stale = {d["id"] for d in self.for_day(day, feed)} - {d["id"] for d in fresh}
        operations = [("upsert", (doc,)) for doc in fresh] + [("delete", (doc_id,)) for doc_id in sorted(stale)]
        for i in range(0, len(operations), BATCH_OPERATIONS):
            self._container.execute_item_batch(operations[i:i + BATCH_OPERATIONS], partition_key=day)
        return len(fresh)

    def for_day(self, day: str, feed: str | None = None) -> list[dict]:
        query, params = "SELECT * FROM c WHERE c.day = @day", [{"name": "@day", "value": day}]
        if feed:
            query += " AND c.feed = @feed"
            params.append({"name": "@feed", "value": feed})
        return list(self._container.query_items(query, parameters=params, partition_key=day, max_item_count=1000))
