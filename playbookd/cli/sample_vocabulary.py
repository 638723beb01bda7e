"""The vocabulary of the sample data: company and person names, regions, zones and plans, and the
cheap random draws the generator makes from them."""

from __future__ import annotations

import random
import unicodedata
from bisect import bisect_right
from datetime import UTC, datetime

ACCOUNT_COLUMNS = (
    "id", "name", "annual_revenue", "plan", "lifecycle_stage", "status", "renewal_date",
    "last_login_at", "open_escalations", "nps", "health", "csm_email", "seats_purchased",
    "seats_used", "seat_utilization", "signup_date", "region", "usage_fit",
)
CONTACT_COLUMNS = (
    "account_id", "email", "first_name", "last_name", "role", "timezone", "status", "is_primary",
)
POOLED_CSM = "success-team@acme.example"
CSMS = (
    "maria.gonzalez@acme.example", "daniel.okafor@acme.example", "priya.raman@acme.example",
    "tom.becker@acme.example", "aiko.tanaka@acme.example",
)
_PREFIXES = (
    "Northwind", "Bluefin", "Copperleaf", "Redwood", "Silverline", "Brightpath", "Ironbridge",
    "Clearwater", "Summit", "Harbor", "Granite", "Lumen", "Meridian", "Oakridge", "Pinecrest",
    "Quarry", "Riverstone", "Saltmarsh", "Tidewater", "Westfield", "Evergreen", "Foxglove",
    "Highland", "Kestrel", "Larkspur", "Maple", "Nimbus", "Orchard", "Pioneer", "Sandpiper",
    "Starling", "Thornbury", "Willow", "Cobalt", "Juniper", "Alder",
)
_SUFFIXES = (
    "Logistics", "Analytics", "Health", "Foods", "Robotics", "Media", "Labs", "Dental",
    "Freight", "Energy", "Software", "Insurance", "Realty", "Outfitters", "Pharma", "Capital",
    "Studios", "Manufacturing", "Learning", "Travel", "Biotech", "Systems", "Payments", "Legal",
    "Architecture", "Brewing", "Mobility", "Marine", "Security", "Retail",
)
_QUALIFIERS = ("", " Group", " Partners", " Holdings", " International", " Collective", " Works")
_STRIDE = 7919  # a prime coprime with len(_PREFIXES) * len(_SUFFIXES): walks every name once
_FIRST = (
    "Olivia", "Liam", "Emma", "Noah", "Sofia", "Mateo", "Amara", "Kenji", "Hannah", "Lukas",
    "Chloe", "Arjun", "Isabel", "Felix", "Mei", "Omar", "Grace", "Jonas", "Zara", "Ethan",
    "Leila", "Diego", "Nora", "Samuel", "Yuki", "Aisha", "Henrik", "Camila", "Ravi", "Elena",
    "Marcus", "Ingrid", "Tariq", "Sophie", "Wei", "Freya", "Kwame", "Lucia", "Ben", "Anika",
)
_LAST = (
    "Smith", "Nguyen", "Garcia", "Müller", "Tanaka", "Okafor", "Patel", "Johansson", "Rossi",
    "Kim", "Dubois", "Silva", "Cohen", "Kowalski", "O'Brien", "Haddad", "Schmidt", "Lopez",
    "Andersen", "Chen", "Walker", "Fischer", "Mensah", "Sato", "Novak", "Reyes", "Larsen",
    "Brennan", "Costa", "Ibrahim", "Wright", "Hoffmann", "Moreau", "Yamamoto", "Singh", "Berg",
)
_REGIONS = ("NA", "EMEA", "APAC", "LATAM")
_REGION_WEIGHTS = (45, 77, 92, 100)  # cumulative
_ZONES = {
    "NA": ("America/New_York", "America/New_York", "America/Chicago", "America/Denver",
           "America/Los_Angeles", "America/Los_Angeles", "America/Toronto"),
    "EMEA": ("Europe/Berlin", "Europe/Berlin", "Europe/London", "Europe/Paris",
             "Europe/Madrid", "Europe/Amsterdam", "Europe/Stockholm", "Africa/Johannesburg"),
    "APAC": ("Asia/Tokyo", "Asia/Tokyo", "Australia/Sydney", "Australia/Sydney",
             "Asia/Singapore", "Asia/Kolkata", "Pacific/Auckland"),
    "LATAM": ("America/Sao_Paulo", "America/Mexico_City", "America/Bogota",
              "America/Argentina/Buenos_Aires"),
}
_PLANS = ((10_000, "starter", 240), (40_000, "growth", 360), (150_000, "business", 480))
_ENTERPRISE = ("enterprise", 600)
_STAGES = ("adopted", "expanding", "at_risk", "onboarding")
_STAGE_WEIGHTS = (55, 77, 95, 100)  # cumulative, for accounts past their first two months
_FITS = ("yes", "investigate", "no")
_FIT_WEIGHTS = {"at_risk": (25, 60, 100)}  # cumulative; at-risk accounts are rarely a good fit
_FIT_USUAL = (70, 90, 100)
_DAY = 86_400


def _utc(now: datetime) -> datetime:
    """`now` as an aware UTC datetime; a naive one is taken to be UTC already."""
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def company(index: int, seed: int = 7) -> tuple[str, str]:
    """(name, domain) for the index-th account: distinct for the first 7,560 accounts."""
    combos = len(_PREFIXES) * len(_SUFFIXES)
    k = (index * _STRIDE + seed) % combos
    first, second = k % len(_PREFIXES), k // len(_PREFIXES)
    lap = index // combos
    qualifier = lap % len(_QUALIFIERS)
    number = f" {lap // len(_QUALIFIERS) + 1}" if lap >= len(_QUALIFIERS) else ""
    name = f"{_PREFIXES[first]} {_SUFFIXES[second]}{_QUALIFIERS[qualifier]}{number}"
    slug = f"{_PREFIX_SLUGS[first]}-{_SUFFIX_SLUGS[second]}{_QUALIFIER_SLUGS[qualifier]}"
    return name, f"{slug}{number.replace(' ', '-')}.example"


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = "".join(c if c.isalnum() else " " for c in ascii_text).split()
    return "-".join(words)


_PREFIX_SLUGS = tuple(_slug(w) for w in _PREFIXES)
_SUFFIX_SLUGS = tuple(_slug(w) for w in _SUFFIXES)
_QUALIFIER_SLUGS = tuple("-" + _slug(w) if w else "" for w in _QUALIFIERS)
_FIRST_SLUGS = tuple(_slug(w).replace("-", "") for w in _FIRST)
_LAST_SLUGS = tuple(_slug(w).replace("-", "") for w in _LAST)


def _below(rng: random.Random, n: int) -> int:
    """A uniform integer in [0, n): randrange's exactness is not needed here and costs 3x."""
    return int(rng.random() * n)


def _between(rng: random.Random, low: int, high: int, step: int = 1) -> int:
    """A uniform integer in [low, high), a multiple of `step` away from low."""
    return low + step * int(rng.random() * ((high - low) // step))


def _pick(rng: random.Random, items: tuple[str, ...], cumulative: tuple[int, ...]) -> str:
    return items[bisect_right(cumulative, rng.random() * cumulative[-1])]
