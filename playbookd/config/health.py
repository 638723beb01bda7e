"""config.yaml's `health:` section: measures weighed into one score, and colour limits per segment.

The shapes are checked here; what needs the known fields (a measure's field, a band's operator on
that field's type, a `when` condition) is checked where conditions are parsed, in model.health_rules.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from playbookd.config.base import Model

BAND_OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "between")
LIMIT_OPERATORS = ("lt", "lte", "gt", "gte")
DEFAULT_COLORS = "default"
_KINDS = "a measure is a field with bands, a field with map, or a when condition with score and else"




class Band(Model):
    eq: Any = Field(None, description="The field's value equals this")
    ne: Any = Field(None, description="The field's value differs from this")
    gt: Any = Field(None, description="The field's value is greater")
    gte: Any = Field(None, description="The field's value is greater or equal")
    lt: Any = Field(None, description="The field's value is less")
    lte: Any = Field(None, description="The field's value is less or equal")
    in_: Any = Field(None, alias="in", description="The field's value is one of these")
    not_in: Any = Field(None, description="The field's value is none of these")
    between: Any = Field(None, description="[low, high], both included")
    score: float = Field(ge=0, le=100, description="The measure's score when this band is the first that matches")

    def operators(self) -> dict[str, Any]:
        """The operators written in this band, as a condition on the measure's field takes them."""
        return {("in" if name == "in_" else name): getattr(self, name)
                for name in self.model_fields_set if name != "score"}


class Measure(Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Short name, shown in the breakdown")
    weight: float = Field(gt=0, description="Its share of the score, relative to the other measures' weights")
    field: str | None = Field(None, description="The account field it reads (with bands or map)")
    bands: list[Band] | None = Field(None, description="First match scores; the last band has no operator and "
                                     "scores the rest")
    map_: dict[Any, float] | None = Field(None, alias="map", description="Value -> score; a value not listed "
                                          "leaves the measure out")
    when: dict[str, Any] | None = Field(None, description="Condition: `score` when it holds, else `else`")
    score: float | None = Field(None, ge=0, le=100, description="With when: the score when it holds")
    else_: float | None = Field(None, alias="else", ge=0, le=100, description="With when: the score otherwise")

    @model_validator(mode="after")
    def _one_kind(self) -> Measure:
        kinds = [name for name in ("bands", "map_", "when") if getattr(self, name) is not None]
        if len(kinds) != 1:
            raise ValueError(f"measure {self.name}: {_KINDS}")
        if self.when is not None:
            if self.field is not None or self.score is None or self.else_ is None:
                raise ValueError(f"measure {self.name}: a when measure takes score and else, and no field")
            return self
        if self.field is None or self.score is not None or self.else_ is not None:
            raise ValueError(f"measure {self.name}: {'bands' if self.bands is not None else 'map'} "
                             "needs field, and takes no score or else")
        if self.bands is not None:
            _check_bands(self.name, self.bands)
        elif not self.map_ or any(not 0 <= s <= 100 for s in self.map_.values()):
            raise ValueError(f"measure {self.name}: map takes value: score pairs, each score 0 to 100")
        return self


def _check_bands(name: str, bands: list[Band]) -> None:
    if not bands:
        raise ValueError(f"measure {name}: bands is a non-empty list")
    for index, band in enumerate(bands[:-1]):
        if not band.operators():
            raise ValueError(f"measure {name}: band {index + 1} has no operator, so the bands after it are never "
                             "used (only the last band goes without one)")
    if bands[-1].operators():
        raise ValueError(f"measure {name}: the last band has no operator: it scores every value the bands before "
                         "it do not match (e.g. {score: 0})")


class Limit(Model):
    lt: float | None = Field(None, description="The score is less than this")
    lte: float | None = Field(None, description="The score is at most this")
    gt: float | None = Field(None, description="The score is greater than this")
    gte: float | None = Field(None, description="The score is at least this")

    @model_validator(mode="after")
    def _some(self) -> Limit:
        if not self.operators():
            raise ValueError(f"a colour limit takes one of {', '.join(LIMIT_OPERATORS)}, e.g. {{lt: 60}}")
        return self

    def operators(self) -> dict[str, float]:
        return {op: value for op in LIMIT_OPERATORS if (value := getattr(self, op)) is not None}


class SegmentColors(Model):
    red: Limit = Field(description="Red when the score meets this limit")
    yellow: Limit = Field(description="Else yellow when it meets this one; else green")


class HealthSettings(Model):
    measures: list[Measure] = Field(min_length=1, description="Measures weighed into the score (0-100)")
    colors: dict[str, SegmentColors] = Field(description="Limits per segment; `default` for the segments not listed")
    history_days: int = Field(400, ge=1, description="Days of score history kept for trend conditions and "
                              "`playbookd health --since`")

    @model_validator(mode="after")
    def _unique(self) -> HealthSettings:
        names = [m.name for m in self.measures]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"measure name(s) {', '.join(twice)} used more than once")
        return self


def color_problems(health: HealthSettings, segments: list[str]) -> list[tuple[tuple[Any, ...], str]]:
    """(location, message) for colour limits naming unknown segments or leaving segments without limits."""
    found: list[tuple[tuple[Any, ...], str]] = []
    for name in health.colors:
        if name != DEFAULT_COLORS and name not in segments:
            found.append((("health", "colors", name), f"health.colors: unknown segment {name!r}; segments are "
                          f"{', '.join(segments)} (or `default` for the others)"))
    uncovered = [s for s in segments if s not in health.colors]
    if uncovered and DEFAULT_COLORS not in health.colors:
        found.append((("health", "colors"), f"health.colors: no limits for segment(s) {', '.join(uncovered)}: "
                      "list them or add `default`"))
    return found
