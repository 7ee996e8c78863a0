"""The feed table: each Graph call-log function the app collects, and where its rows and pages go."""
from __future__ import annotations

from dataclasses import dataclass

from .settings import Settings


@dataclass(frozen=True)
class Feed:
    name: str                # the value of the FEEDS setting and the archive prefix
    graph_function: str      # callRecords function name
    entity_type: str         # Graph's row type, for the OData feed
    to_inclusive: bool       # getPstnCalls documents toDateTime inclusive; getDirectRoutingCalls exclusive
    container_setting: str   # Settings attribute naming the Cosmos container

    def container(self, settings: Settings) -> str:
        return getattr(settings, self.container_setting)


FEEDS: dict[str, Feed] = {
    "pstn": Feed("pstn", "getPstnCalls", "pstnCallLogRow", True, "cosmos_pstn_container"),
    "directRouting": Feed("directRouting", "getDirectRoutingCalls", "directRoutingLogRow", False,
                          "cosmos_direct_routing_container"),
}


def enabled_feeds(settings: Settings) -> list[Feed]:
    return [FEEDS[name] for name in settings.feeds]
