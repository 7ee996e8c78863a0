"""The entity model of the feed: entity sets, their entity types and properties, and where each property lives
in the stored Cosmos document.

Everything else in the package (CSDL, $select / $orderby checks, $filter type checks and SQL) reads this model;
nothing here does I/O.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..config.feeds import DERIVED, FEEDS
from .errors import ODataError

NAMESPACE = "TeamsCallLogs"
CONTAINER_NAME = "Container"

# Edm primitive types used by the model.
STRING = "Edm.String"
INT32 = "Edm.Int32"
DECIMAL = "Edm.Decimal"
BOOLEAN = "Edm.Boolean"
DATETIMEOFFSET = "Edm.DateTimeOffset"
DATE = "Edm.Date"

NUMERIC_TYPES = frozenset({INT32, DECIMAL})

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Property:
    """One structural property.

    `edm_type` is the element type (a primitive `Edm.*` or a qualified complex type name); `collection` says the
    property is `Collection(edm_type)`. `path` is the stored document's field the SQL filters and sorts on
    (`startDateTime` -> `startUtc`, the UTC-normalised copy written at ingestion); the feed returns the stored
    field of the property's own name (Graph's value as sent). `canonical` says the stored text of a
    DateTimeOffset path is always in the canonical 7-digit UTC form (true only for startUtc), which lets the
    SQL compare it as plain strings.
    """
    name: str
    edm_type: str
    path: str = ""
    collection: bool = False
    nullable: bool = True
    key: bool = False
    computed: bool = False
    canonical: bool = False

    def __post_init__(self) -> None:
        # Names are rendered into SQL as c["name"]: only plain identifiers may ever get there.
        for text in (self.name, self.path or self.name):
            if not _NAME.match(text):
                raise ValueError(f"invalid property name or path: {text!r}")
        if not self.path:
            object.__setattr__(self, "path", self.name)

    @property
    def type_name(self) -> str:
        """The CSDL Type attribute: `Edm.String` or `Collection(TeamsCallLogs.AdministrativeUnitInfo)`."""
        return f"Collection({self.edm_type})" if self.collection else self.edm_type


@dataclass(frozen=True)
class ComplexType:
    name: str
    properties: tuple[Property, ...]

    @property
    def qualified_name(self) -> str:
        return f"{NAMESPACE}.{self.name}"


@dataclass(frozen=True)
class EntityType:
    name: str
    properties: tuple[Property, ...]
    _by_name: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        names = [p.name for p in self.properties]
        if len(names) != len(set(names)):
            raise ValueError(f"duplicate property in {self.name}")
        self._by_name.update({p.name: p for p in self.properties})

    @property
    def qualified_name(self) -> str:
        return f"{NAMESPACE}.{self.name}"

    @property
    def keys(self) -> tuple[Property, ...]:
        return tuple(p for p in self.properties if p.key)

    @property
    def property_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.properties)

    def get(self, name: str) -> Property | None:
        return self._by_name.get(name)

    def property(self, name: str, target: str | None = None) -> Property:
        """The declared property `name`, or a 400 that names it (and suggests a case-insensitive match)."""
        prop = self._by_name.get(name)
        if prop is None:
            raise unknown_property(self, name, target)
        return prop


@dataclass(frozen=True)
class EntitySet:
    """An entity set, the feed or derived table it reads (its name in the feed table), its time property (the
    one whose range in $filter is pushed down to the day partitions), the properties $orderby accepts (first
    key and tiebreaks) and the stored field rows of a day are served in order of (then id)."""
    name: str
    entity_type: EntityType
    feed: str
    time_property: str
    orderable: tuple[str, ...]
    tiebreak: tuple[str, ...] = ("id",)
    sort_path: str = "startUtc"


def unknown_property(entity_type: EntityType, name: str, target: str | None = None) -> ODataError:
    hint = ""
    for candidate in entity_type.property_names:
        if candidate.lower() == name.lower():
            hint = f" (did you mean '{candidate}'? property names are case-sensitive)"
            break
    shown = name if len(name) <= 80 else name[:77] + "..."
    return ODataError(400, "UnknownProperty",
                      f"Property '{shown}' is not declared on {entity_type.qualified_name}{hint}.",
                      target or name)


def _p(name: str, edm_type: str = STRING, **kwargs) -> Property:
    return Property(name, edm_type, **kwargs)


ADMINISTRATIVE_UNIT_INFO = ComplexType("AdministrativeUnitInfo", (_p("id"),))
COMPLEX_TYPES: tuple[ComplexType, ...] = (ADMINISTRATIVE_UNIT_INFO,)

_ADMIN_UNITS = Property("administrativeUnitInfos", ADMINISTRATIVE_UNIT_INFO.qualified_name, collection=True)
# `day` is the partition key written at ingestion (UTC day of startDateTime): exposed, read-only.
_DAY = Property("day", DATE, computed=True)
# startDateTime is filtered and sorted on startUtc, Graph's value normalised to UTC with 7 fractional digits.
_START = Property("startDateTime", DATETIMEOFFSET, path="startUtc", canonical=True)

PSTN_CALL = EntityType("PstnCall", (
    _p("id", nullable=False, key=True),
    _p("callId"),
    _p("userId"),
    _p("userPrincipalName"),
    _p("userDisplayName"),
    _START,
    _p("endDateTime", DATETIMEOFFSET),
    _p("duration", INT32),
    _p("charge", DECIMAL),
    _p("connectionCharge", DECIMAL),
    _p("currency"),
    _p("callType"),
    _p("calleeNumber"),
    _p("callerNumber"),
    _p("destinationContext"),
    _p("destinationName"),
    _p("conferenceId"),
    _p("licenseCapability"),
    _p("inventoryType"),
    _p("operator"),
    _p("callDurationSource"),
    _p("usageCountryCode"),
    _p("tenantCountryCode"),
    _p("otherPartyCountryCode"),
    _p("clientLocalIpV4Address"),
    _p("clientLocalIpV6Address"),
    _p("clientPublicIpV4Address"),
    _p("clientPublicIpV6Address"),
    _ADMIN_UNITS,
    _DAY,
))

DIRECT_ROUTING_CALL = EntityType("DirectRoutingCall", (
    _p("id", nullable=False, key=True),
    _p("correlationId"),
    _p("userId"),
    _p("userPrincipalName"),
    _p("userDisplayName"),
    _START,
    _p("inviteDateTime", DATETIMEOFFSET),
    _p("failureDateTime", DATETIMEOFFSET),
    _p("endDateTime", DATETIMEOFFSET),
    _p("duration", INT32),
    _p("callType"),
    _p("successfulCall", BOOLEAN),
    _p("callerNumber"),
    _p("calleeNumber"),
    _p("mediaPathLocation"),
    _p("signalingLocation"),
    _p("finalSipCode", INT32),
    _p("finalSipCodePhrase"),
    _p("callEndSubReason", INT32),
    _p("trunkFullyQualifiedDomainName"),
    _p("mediaBypassEnabled", BOOLEAN),
    _p("transferorCorrelationId"),
    _p("userCountryCode"),
    _p("otherPartyCountryCode"),
    _ADMIN_UNITS,
    _DAY,
))

DAILY_USAGE = EntityType("DailyUsage", (
    _p("id", nullable=False, key=True),
    Property("day", DATE),
    _p("feed"),
    _p("userId"),
    _p("userPrincipalName"),
    _p("userDisplayName"),
    _p("callType"),
    _p("destinationContext"),
    _p("currency"),
    _p("calls", INT32),
    _p("minutes", DECIMAL),
    _p("charge", DECIMAL),
    _p("connectionCharge", DECIMAL),
))

# The entity types by name, as the feed table refers to them.
ENTITY_TYPES: dict[str, EntityType] = {t.name: t for t in (PSTN_CALL, DIRECT_ROUTING_CALL, DAILY_USAGE)}


def entity_sets() -> dict[str, EntitySet]:
    """The service's entity sets, from the feed table: one per feed, serving its rows ordered by its time
    field (stored as startUtc), and one per derived table. Read from the tables when called, so a feed added
    there is served at once."""
    sets = {}
    for feed in FEEDS.values():
        sets[feed.entity_set] = EntitySet(feed.entity_set, ENTITY_TYPES[feed.entity_type], feed.name,
                                          feed.time_field, (feed.time_field,))
    for table in DERIVED.values():
        sets[table.entity_set] = EntitySet(table.entity_set, ENTITY_TYPES[table.entity_type], table.name,
                                           table.time_field, (table.time_field,), sort_path=table.sort_field)
    return sets


def entity_set(name: str) -> EntitySet:
    """The entity set called `name` (case-sensitive, as in OData URLs), or a 404."""
    sets = entity_sets()
    found = sets.get(name)
    if found is None:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise ODataError(404, "NotFound", f"No entity set named '{shown}'; the service has "
                         + ", ".join(sets) + ".", name)
    return found


def entity_type(entity: str | EntitySet | EntityType) -> EntityType:
    """Accept an entity set name, an EntitySet or an EntityType; return the EntityType."""
    if isinstance(entity, EntityType):
        return entity
    if isinstance(entity, EntitySet):
        return entity.entity_type
    return entity_set(entity).entity_type
