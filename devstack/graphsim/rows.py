"""Synthetic call-log rows: pstnCallLogRow and directRoutingLogRow, in their v1.0 and beta shapes.

Rows are generated in their beta shape (a superset); `project` cuts the v1.0 shape out of it, so both
versions of a row always share id and common fields. This module is hot (tens of thousands of rows per
day), so it draws with rng.random()/getrandbits() and table look-ups rather than heavier helpers.
"""
from __future__ import annotations

import random
from bisect import bisect
from itertools import accumulate
from operator import itemgetter

from .tenant import COUNTRIES, TENANT_COUNTRY, Country, Tenant, User, guid
from .ticks import DAY_TICKS, TICKS_PER_SECOND, day_start, format_ticks

FEEDS = ("pstn", "directRouting")
VERSIONS = ("v1.0", "beta")

PSTN_V1 = (
    "id", "callId", "userId", "userPrincipalName", "userDisplayName", "startDateTime", "endDateTime",
    "duration", "charge", "callType", "currency", "calleeNumber", "usageCountryCode", "tenantCountryCode",
    "connectionCharge", "callerNumber", "destinationContext", "destinationName", "conferenceId",
    "licenseCapability", "inventoryType", "operator", "callDurationSource",
)
PSTN_BETA = PSTN_V1 + (
    "otherPartyCountryCode", "clientPublicIpV4Address", "clientPublicIpV6Address",
    "clientLocalIpV4Address", "clientLocalIpV6Address", "administrativeUnitInfos",
)
DR_V1 = (
    "id", "correlationId", "userId", "userPrincipalName", "userDisplayName", "startDateTime",
    "inviteDateTime", "failureDateTime", "endDateTime", "duration", "callType", "successfulCall",
    "callerNumber", "calleeNumber", "mediaPathLocation", "signalingLocation", "finalSipCode",
    "finalSipCodePhrase", "callEndSubReason", "trunkFullyQualifiedDomainName", "mediaBypassEnabled",
)
DR_BETA = DR_V1 + ("transferorCorrelationId", "userCountryCode", "administrativeUnitInfos",
                   "otherPartyCountryCode")
FIELDS = {("pstn", "v1.0"): PSTN_V1, ("pstn", "beta"): PSTN_BETA,
          ("directRouting", "v1.0"): DR_V1, ("directRouting", "beta"): DR_BETA}

NOT_FAILED = "0001-01-01T00:00:00Z"  # failureDateTime of a call that did not fail

# (callType, weight). oc_user_in is the rare, undocumented Operator Connect type clients must tolerate.
PSTN_CALL_TYPES = (("user_in", 33), ("user_out", 33), ("user_out_conf", 3), ("user_out_transfer", 3),
                   ("user_out_forwarding", 3), ("conf_in", 10), ("conf_out", 4), ("ucap_in", 6),
                   ("ucap_out", 3), ("oc_user_in", 2))
PSTN_INBOUND = frozenset({"user_in", "conf_in", "ucap_in", "oc_user_in"})
DR_CALL_TYPES = (("ByotIn", 45), ("ByotOut", 45), ("ByotOutUserForwarding", 5), ("ByotOutUserTransfer", 5))
DR_FAILURES = ((487, "Request Terminated", 540487), (486, "Busy Here", 540486), (404, "Not Found", 560404),
               (480, "Temporarily Unavailable", 540480), (503, "Service Unavailable", 560503),
               (408, "Request Timeout", 560408))
DR_LOCATIONS = ("USWE", "USEA", "USSC", "EUWE", "EUNO", "APSE")
DR_TRUNKS = ("sbc1.contoso.com", "sbc2.contoso.com", "sbc-eu.contoso.com")
OPERATOR_CONNECT = "Contoso Telecom"
CALLED_ABROAD = tuple(COUNTRIES.values())


class _Picker:
    """Weighted choice from one rng.random() (faster than rng.choices for one item)."""

    def __init__(self, weighted):
        self.items, weights = zip(*weighted)
        cumulative = list(accumulate(weights))
        self.bounds = [c / cumulative[-1] for c in cumulative]

    def __call__(self, rng: random.Random):
        return self.items[bisect(self.bounds, rng.random())]


_pstn_type = _Picker(PSTN_CALL_TYPES)
_dr_type = _Picker(DR_CALL_TYPES)


def project(row: dict, feed: str, version: str) -> dict:
    """The row as `version` of the API returns it."""
    if version == "beta":
        return row
    return {name: row[name] for name in FIELDS[(feed, version)]}


def generate(feed: str, rng: random.Random, tenant: Tenant, day: int, count: int) -> list[dict]:
    """`count` rows starting within the UTC day `day` (an ordinal), sorted by (startDateTime, id).

    The sort keeps paging stable: $skip offsets mean the same rows on every request.
    """
    start_of_day = day_start(day)
    if feed == "pstn":
        call_ids: list[str] = []  # recent callIds, some reused by later rows
        rows = [_pstn_row(rng, tenant, start_of_day + _time_of_day(rng), call_ids) for _ in range(count)]
    else:
        rows = [_dr_row(rng, tenant, start_of_day + _time_of_day(rng)) for _ in range(count)]
    rows.sort(key=itemgetter("startDateTime", "id"))
    return rows


def _time_of_day(rng: random.Random) -> int:
    """Ticks after midnight: three calls in four during (UTC) business hours, the rest at any time."""
    if rng.random() < 0.75:
        ticks = int(rng.triangular(6, 20, 13) * 3600 * TICKS_PER_SECOND)
    else:
        ticks = int(rng.random() * DAY_TICKS)
    return min(ticks, DAY_TICKS - 1)


def _duration(rng: random.Random) -> int:
    """Seconds: a few near-zero calls, otherwise lognormal with a median near 3 minutes."""
    if rng.random() < 0.07:
        return int(rng.random() * 6)
    return min(max(int(rng.lognormvariate(5.2, 0.9)), 6), 4 * 3600)


def _other_country(rng: random.Random, home: Country) -> Country:
    return home if rng.random() < 0.75 else CALLED_ABROAD[int(rng.random() * len(CALLED_ABROAD))]


def _pick(rng: random.Random, items):
    return items[int(rng.random() * len(items))]


def _ipv4(rng: random.Random) -> str:
    x = rng.getrandbits(32)
    return f"{20 + (x >> 24) % 200}.{(x >> 16) & 255}.{(x >> 8) & 255}.{(x & 254) + 1}"


def _admin_units(user: User) -> list[dict]:
    return [{"id": unit} for unit in user.admin_units]


def _pstn_row(rng: random.Random, tenant: Tenant, start: int, call_ids: list[str]) -> dict:
    call_type = _pstn_type(rng)
    bot = call_type.startswith("ucap")
    conference = call_type.startswith("conf")
    inbound = call_type in PSTN_INBOUND
    user = _pick(rng, tenant.bots if bot else tenant.users)
    other = _other_country(rng, user.country)
    other_number = other.number(rng)
    own_number = tenant.bridge_number if conference else user.number
    duration = _duration(rng)
    if inbound:
        charge = connection_charge = 0
        context = None
    else:
        domestic = other is user.country
        context = "Domestic" if domestic else "International"
        rate = 0.0125 + rng.random() * (0.0175 if domestic else 0.4)
        charge = round(rate * -(-duration // 60), 4) if duration else 0
        connection_charge = 0 if domestic or rng.random() < 0.75 else round(0.01 + rng.random() * 0.09, 2)
    if call_ids and rng.random() < 0.05:  # transfers and forwards log several rows for one call
        call_id = _pick(rng, call_ids[-50:])
    else:
        x = rng.getrandbits(61)
        call_id = f"{10**9 + (x >> 30) % 10**9}_{10**8 + (x & 0x3FFFFFFF) % (9 * 10**8)}@{_ipv4(rng)}"
        call_ids.append(call_id)
    operator_connect = call_type.startswith("oc_")
    no_client = rng.random() < 0.2  # calls not placed from a Teams client carry no client addresses
    return {
        "id": guid(rng),
        "callId": call_id,
        "userId": user.id,
        "userPrincipalName": user.upn,
        "userDisplayName": user.display_name,
        "startDateTime": format_ticks(start),
        "endDateTime": format_ticks(start + duration * TICKS_PER_SECOND),
        "duration": duration,
        "charge": charge,
        "callType": call_type,
        "currency": user.country.currency,
        "calleeNumber": own_number if inbound else other_number,
        "usageCountryCode": user.country.code,
        "tenantCountryCode": TENANT_COUNTRY,
        "connectionCharge": connection_charge,
        "callerNumber": other_number if inbound else own_number,
        "destinationContext": context,
        "destinationName": other.name,
        "conferenceId": str(10**8 + int(rng.random() * 9 * 10**8)) if conference else None,
        "licenseCapability": "MCOMEETADD" if conference else user.license,
        "inventoryType": "Service" if conference or bot else "Subscriber",
        "operator": OPERATOR_CONNECT if operator_connect else "Microsoft",
        "callDurationSource": "operator" if operator_connect else "microsoft",
        "otherPartyCountryCode": other.code,
        "clientPublicIpV4Address": None if no_client else user.public_ipv4,
        "clientPublicIpV6Address": None if no_client else user.public_ipv6,
        "clientLocalIpV4Address": None if no_client else user.local_ipv4,
        "clientLocalIpV6Address": None if no_client else user.local_ipv6,
        "administrativeUnitInfos": _admin_units(user),
    }


def _dr_row(rng: random.Random, tenant: Tenant, start: int) -> dict:
    call_type = _dr_type(rng)
    inbound = call_type == "ByotIn"
    user = _pick(rng, tenant.users)
    other = _other_country(rng, user.country)
    other_number = other.number(rng)
    if rng.random() < 0.88:
        duration = _duration(rng)
        invite = start - int((1 + rng.random() * 19) * TICKS_PER_SECOND)  # ringing before the answer
        end = start + duration * TICKS_PER_SECOND
        failure, (sip_code, sip_phrase, sub_reason), successful = NOT_FAILED, (0, "BYE", 540000), True
    else:
        duration, invite = 0, start
        end = start + int((1 + rng.random() * 29) * TICKS_PER_SECOND)
        failure, (sip_code, sip_phrase, sub_reason), successful = format_ticks(end), _pick(rng, DR_FAILURES), False
    trunk = _pick(rng, DR_TRUNKS)
    return {
        "id": guid(rng),
        "correlationId": guid(rng),
        "userId": user.id,
        "userPrincipalName": user.upn,
        "userDisplayName": user.display_name,
        "startDateTime": format_ticks(start),
        "inviteDateTime": format_ticks(invite),
        "failureDateTime": failure,
        "endDateTime": format_ticks(end),
        "duration": duration,
        "callType": call_type,
        "successfulCall": successful,
        "callerNumber": other_number if inbound else user.number,
        "calleeNumber": user.number if inbound else other_number,
        "mediaPathLocation": _pick(rng, DR_LOCATIONS),
        "signalingLocation": _pick(rng, DR_LOCATIONS),
        "finalSipCode": sip_code,
        "finalSipCodePhrase": sip_phrase,
        "callEndSubReason": sub_reason,
        "trunkFullyQualifiedDomainName": trunk,
        "mediaBypassEnabled": trunk != "sbc-eu.contoso.com",  # bypass is a per-trunk setting
        "transferorCorrelationId": guid(rng) if call_type == "ByotOutUserTransfer" else "",
        "userCountryCode": user.country.code,
        "administrativeUnitInfos": _admin_units(user),
        "otherPartyCountryCode": other.code,
    }
