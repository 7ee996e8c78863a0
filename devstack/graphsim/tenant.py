"""The synthetic tenant: its users, its bots (resource accounts) and the countries calls go to.

Everything derives from the seed through `stable_random`, so two processes with the same seed build
the same tenant.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

DOMAIN = "contoso.com"
TENANT_COUNTRY = "US"
USER_COUNT = 120


def stable_random(*parts: object) -> random.Random:
    """A Random seeded from a SHA-256 of the parts: unlike hash(), the same in every process."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def guid(rng: random.Random) -> str:
    """A version-4 style GUID drawn from rng (uuid.uuid4() would ignore the seed)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


@dataclass(frozen=True)
class Country:
    code: str
    name: str
    dial_prefix: str
    national_digits: int
    currency: str

    def number(self, rng: random.Random) -> str:
        """An E.164 number in this country (first national digit never 0)."""
        low = 10 ** (self.national_digits - 1)  # rng.random() arithmetic: randrange is slow on hot paths
        return f"{self.dial_prefix}{low * 2 + int(rng.random() * low * 8)}"


# Where users live (and pay in); the other countries are only called.
COUNTRIES = {c.code: c for c in (
    Country("US", "United States", "+1", 10, "USD"),
    Country("GB", "United Kingdom", "+44", 10, "GBP"),
    Country("DE", "Germany", "+49", 10, "EUR"),
    Country("FR", "France", "+33", 9, "EUR"),
    Country("NL", "Netherlands", "+31", 9, "EUR"),
    Country("CA", "Canada", "+1", 10, "CAD"),
    Country("MX", "Mexico", "+52", 10, "MXN"),
    Country("IN", "India", "+91", 10, "INR"),
    Country("JP", "Japan", "+81", 10, "JPY"),
    Country("AU", "Australia", "+61", 9, "AUD"),
    Country("BR", "Brazil", "+55", 10, "BRL"),
    Country("ES", "Spain", "+34", 9, "EUR"),
)}
USER_COUNTRY_WEIGHTS = {"US": 70, "GB": 10, "DE": 10, "FR": 5, "NL": 5}
LICENSES = ("MCOPSTNU", "MCOPSTN1", "MCOPSTN2")

FIRST_NAMES = (
    "Adele", "Alex", "Allan", "Ben", "Carla", "Chris", "Christie", "Debra", "Diego", "Elena", "Emily",
    "Enrico", "Fatima", "Grady", "Hana", "Henrietta", "Isaiah", "Joni", "Johanna", "Kenji", "Lee",
    "Lidia", "Lynne", "Megan", "Miriam", "Nestor", "Nora", "Omar", "Patti", "Pradeep", "Priya",
    "Raul", "Richard", "Sakura", "Sofia", "Tomas", "Uma", "Victor", "Wanda", "Yusuf",
)
LAST_NAMES = (
    "Adams", "Bauer", "Brown", "Castillo", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Gupta",
    "Hansen", "Ito", "Jansen", "Khan", "Kowalski", "Lopez", "Malk", "Martin", "Meyer", "Moreau",
    "Nakamura", "Novak", "Okafor", "Patel", "Quinn", "Rossi", "Schmidt", "Silva", "Smith", "Tanaka",
    "Varga", "Vance", "Walker", "Wilber", "Wilson", "Young", "Zhang", "Zimmer", "Lund", "Reyes",
)
BOTS = (("aa-main", "Main Auto Attendant"), ("cq-support", "Support Call Queue"),
        ("cq-sales", "Sales Call Queue"))


@dataclass(frozen=True)
class User:
    id: str  # "" for bots: Graph leaves userId empty on ucap_* rows
    upn: str
    display_name: str
    number: str
    country: Country
    license: str
    admin_units: tuple[str, ...]
    local_ipv4: str
    public_ipv4: str
    local_ipv6: str | None
    public_ipv6: str | None


class Tenant:
    """Users and bots of one seed, plus the tenant's conference bridge number."""

    def __init__(self, seed: int):
        self.seed = seed
        rng = stable_random("tenant", seed)
        admin_units = [guid(rng) for _ in range(4)]
        codes, weights = zip(*USER_COUNTRY_WEIGHTS.items())
        taken: set[str] = set()
        self.users: list[User] = []
        for _ in range(USER_COUNT):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            alias, n = f"{first}.{last}".lower(), 2
            while alias in taken:  # a second Adele Vance becomes adele.vance2
                alias, n = f"{first}.{last}{n}".lower(), n + 1
            taken.add(alias)
            country = COUNTRIES[rng.choices(codes, weights)[0]]
            units = tuple(rng.sample(admin_units, rng.choice((0, 0, 0, 1, 1, 2))))
            self.users.append(self._person(rng, guid(rng), f"{alias}@{DOMAIN}", f"{first} {last}",
                                           country, rng.choice(LICENSES), units))
        us = COUNTRIES[TENANT_COUNTRY]
        self.bots = [self._person(rng, "", f"{alias}@{DOMAIN}", name, us, "MCOPSTNU", ())
                     for alias, name in BOTS]
        self.bridge_number = us.number(rng)

    @staticmethod
    def _person(rng: random.Random, user_id: str, upn: str, name: str, country: Country,
                license: str, units: tuple[str, ...]) -> User:
        has_v6 = rng.random() < 0.4
        return User(
            id=user_id, upn=upn, display_name=name, number=country.number(rng), country=country,
            license=license, admin_units=units,
            local_ipv4=f"192.168.{rng.randrange(256)}.{rng.randrange(2, 255)}",
            public_ipv4=f"{rng.randrange(20, 220)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            local_ipv6=f"fd00:{rng.getrandbits(16):x}::{rng.getrandbits(16):x}" if has_v6 else None,
            public_ipv6=f"2600:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}::{rng.getrandbits(16):x}"
            if has_v6 else None,
        )
