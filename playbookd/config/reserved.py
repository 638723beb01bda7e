"""Account field names playbookd keeps for itself: no source, custom field or `set` step may use them."""

from __future__ import annotations

HEALTH_PREFIX = "health_"
RESERVED = frozenset({"contacts", "enrollment", "globals"})


def reserved_field(name: str) -> str | None:
    """Why `name` cannot be an account field, else None."""
    if name.startswith(HEALTH_PREFIX):
        return f"{name!r} is a reserved name: health_* fields are computed from config.yaml's health section"
    if name in RESERVED:
        return (f"{name!r} is a reserved name ({', '.join(sorted(RESERVED))} and health_* mean something in "
                "conditions and templates)")
    return None
