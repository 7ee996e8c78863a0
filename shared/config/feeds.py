"""THE feed table: everything that differs between the Graph call-log functions the app collects.

Every other module of the app derives what it needs from here: the settings of each feed's container, the
Cosmos containers and their indexing, the URL the Graph client calls, which rows of a page are inside a
window, where a row's day comes from, the archive prefix and the ledger partition, the OData entity set and
`/api/calls`, the summaries recomputed for a changed day, and the status page. Adding a feed to the app is
one entry here plus its entity type in `shared/odata/model.py` (its properties, which only a person can
write). Outside the app, the deployment and the documents name the feeds too, each checked against this
table by a test: the Bicep's containers (tests/test_infra.py), openapi.yaml's `feed` choices
(tests/test_feed_table.py).

The derived tables (computed from stored rows, shared by the feeds that declare them) are declared below the
feeds in the same way: their container setting and OData entity set.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feed:
    name: str                # the value in the FEEDS setting, the archive prefix and the ledger partition
    title: str               # what a person calls its rows: "PSTN call rows"
    graph_function: str      # the communications/callRecords function that serves them
    to_inclusive: bool       # whether the function's toDateTime is inclusive (a row starting there is in)
    time_field: str          # the row's instant that places it in a day partition and orders it (startUtc)
    entity_set: str          # the OData entity set that serves its rows
    entity_type: str         # that set's entity type, declared in shared/odata/model.py
    container_setting: str   # the setting naming its Cosmos DB container
    container_default: str
    summaries: tuple[str, ...] = ("dailyUsage",)  # names of the derived tables recomputed from its rows
    enabled_by_default: bool = True               # in the FEEDS setting's default


@dataclass(frozen=True)
class DerivedTable:
    name: str                # as feeds name it in `summaries`, and the source name of its entity set
    title: str
    entity_set: str
    entity_type: str
    container_setting: str
    container_default: str
    time_field: str = "day"  # the property whose range prunes day partitions
    sort_field: str = "id"   # rows of a day are served in this order


# Graph documents getPstnCalls' toDateTime as inclusive and getDirectRoutingCalls' as exclusive.
FEEDS: dict[str, Feed] = {feed.name: feed for feed in (
    Feed("pstn", "PSTN call rows", "getPstnCalls", to_inclusive=True, time_field="startDateTime",
         entity_set="PstnCalls", entity_type="PstnCall", container_setting="COSMOS_PSTN_CONTAINER",
         container_default="pstnCalls"),
    Feed("directRouting", "Direct Routing call rows", "getDirectRoutingCalls", to_inclusive=False,
         time_field="startDateTime", entity_set="DirectRoutingCalls", entity_type="DirectRoutingCall",
         container_setting="COSMOS_DIRECT_ROUTING_CONTAINER", container_default="directRoutingCalls"),
)}

# The feed a route serves when the request names none (/api/calls).
DEFAULT_FEED = "pstn"

DAILY_USAGE = DerivedTable("dailyUsage", "daily usage summaries", entity_set="DailyUsage", entity_type="DailyUsage",
                           container_setting="COSMOS_SUMMARIES_CONTAINER", container_default="dailyUsage")
DERIVED: dict[str, DerivedTable] = {table.name: table for table in (DAILY_USAGE,)}


def enabled_feeds(settings) -> list[Feed]:
    """The feeds of the FEEDS setting, in its order."""
    return [FEEDS[name] for name in settings.feeds]


def container_tables() -> list[Feed | DerivedTable]:
    """Every table with a Cosmos container of its own, feeds first: the settings, schema and stores use it."""
    return [*FEEDS.values(), *DERIVED.values()]
