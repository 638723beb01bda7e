"""Everything the engine runs with, loaded and validated together: config, playbooks, templates.

A Runtime is immutable once built; the daemon swaps in a new one on reload only when the
new one validated without problems.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from playbookd.config.durations import Months, Span
from playbookd.config.settings import Config, load_config
from playbookd.config.yaml_loader import Located, load_yaml_file
from playbookd.errors import Problem, UserError, ValidationError, Where
from playbookd.model import evaluation
from playbookd.model import fields as F
from playbookd.model.account import AccountRecord, account_types
from playbookd.model.conditions import TREND, Condition, FieldTypes, Leaf, leaves, parse_condition, uses_contacts
from playbookd.model.health import HEALTH_FIELDS, HealthRules
from playbookd.model.health_rules import build_rules
from playbookd.model.playbooks import KNOWN_ROLES, Context, load_playbooks, set_step_fields
from playbookd.model.steps import Playbook, SetStep, Step, TaskStep, WebhookStep, step_kind
from playbookd.sources.base import SourceError
from playbookd.sources.registry import source_columns
from playbookd.store.people import custom_contact_types
from playbookd.store.schema import contacts
from playbookd.store.schema import fields as fields_table
from playbookd.templates.errors import TemplateError
from playbookd.templates.globals import load_globals
from playbookd.templates.render import Templates


@dataclass(frozen=True)
class Runtime:
    config: Config
    playbooks: tuple[Playbook, ...]
    templates: Templates
    segments: tuple[tuple[str, Condition | None], ...]
    types: dict[str, str | None] = field(default_factory=dict)
    exit_when: Condition | None = None  # config.yaml's project-wide exit
    health: HealthRules | None = None
    trend_spans: tuple[Span, ...] = ()  # the windows of the trend conditions in use
    contact_types: dict[str, str | None] = field(default_factory=dict)

    def history_from(self, now: datetime) -> date | None:
        """The first day of health history that evaluating at `now` needs; None when no condition reads it."""
        if not self.trend_spans:
            return None
        return min(evaluation.window_start(span, now, self.config.tz) for span in self.trend_spans)

    def leaves_everything(self, record: AccountRecord, now: datetime) -> bool:
        """The account matches config.yaml's project-wide exit_when (churned, cancelled ...)."""
        return self.exit_when is not None and evaluation.evaluate(self.exit_when, record, now, self.config.tz)

    @cached_property
    def needs_contacts(self) -> bool:
        """Some condition tests contacts: account records must then be loaded with theirs."""
        conds = [self.exit_when]
        for p in self.playbooks:
            conds += [p.trigger, p.exit_when, p.goal.when if p.goal else None]
        return any(uses_contacts(cond) for cond in conds)

    def playbook(self, playbook_id: str) -> Playbook | None:
        return next((p for p in self.playbooks if p.id == playbook_id), None)

    @property
    def active(self) -> tuple[Playbook, ...]:
        """Live as their files say; `store.launch.statuses` adds what `playbookd playbooks pause` set."""
        return tuple(p for p in self.playbooks if p.status == "live")


def store_catalog(engine: Engine | None) -> tuple[dict[str, str], set[str]]:
    """Custom account field types and contact roles the store already knows, if reachable."""
    if engine is None:
        return {}, set()
    try:
        with engine.connect() as conn:
            types = {r.name: r.type for r in conn.execute(
                select(fields_table).where(fields_table.c.entity == "accounts"))}
            roles = {r for (r,) in conn.execute(select(contacts.c.role).distinct()) if r}
    except SQLAlchemyError:
        return {}, set()
    return types, roles


def source_catalog(config: Config, entity: str = "accounts") -> tuple[dict[str, str | None], list[Problem]]:
    """Columns the configured sources of `entity` supply (a CSV's header), typed where declared."""
    found: dict[str, str | None] = {}
    problems: list[Problem] = []
    for source in config.sources:
        if source.entity != entity:
            continue
        try:
            columns = source_columns(source)
        except SourceError as exc:
            if not exc.unreachable:  # down is not wrong: its columns come from the store meanwhile
                problems.append(Problem(str(config.path), None, None, f"source {source.name}: {exc}"))
            continue
        except UserError as exc:
            problems.append(Problem(str(config.path), None, None, f"source {source.name}: {exc}"))
            continue
        for column in columns:
            found[column] = source.types.get(column, found.get(column))
    return found, problems


def field_types(config: Config, engine: Engine | None) -> tuple[dict[str, str | None], list[Problem]]:
    store_types, _ = store_catalog(engine)
    from_sources, problems = source_catalog(config)
    types: dict[str, str | None] = {**from_sources}
    types.update(store_types)
    types.update(config.custom_fields)
    types.update(account_types({}))
    if config.health is not None:
        types.update(HEALTH_FIELDS)
    for name in set_step_fields(Path(config.playbooks)):  # a field a playbook writes exists before any sync
        types.setdefault(name, None)
    types.setdefault("risk_flag", F.STRING)
    return types, problems


def _health(config: Config, doc: Located, types: dict[str, str | None]) -> tuple[HealthRules | None, list[Problem]]:
    if config.health is None:
        return None, []
    return build_rules(config.health, FieldTypes(types), config.tz, str(config.path), doc)


def _trend_leaves(playbooks: Sequence[Playbook], exit_when: Condition | None) -> list[tuple[str, Leaf]]:
    conds: list[tuple[str, Condition | None]] = [("", exit_when)]
    for p in playbooks:
        conds += [(p.file, p.trigger), (p.file, p.exit_when), (p.file, p.goal.when if p.goal else None)]
    return [(file, leaf) for file, cond in conds if cond is not None for leaf in leaves(cond) if leaf.op in TREND]


def _reach_problems(config: Config, found: list[tuple[str, Leaf]]) -> list[Problem]:
    """A trend window longer than the history kept would silently look at less than it says."""
    kept = config.health.history_days if config.health is not None else 0
    problems = []
    for file, leaf in found:
        within = leaf.value.within
        if (within.count * 31 if isinstance(within, Months) else within / 86_400) > kept:
            problems.append(Problem(file or str(config.path), leaf.line, leaf.col,
                                    f"{leaf.field} {leaf.op}: the window is longer than the {kept} days of "
                                    "history kept (health.history_days)"))
    return problems


def contact_field_types(config: Config, engine: Engine | None) -> tuple[dict[str, str | None], list[Problem]]:
    """Every contact field a condition or template may name: extra columns the contact sources
    supply or the store knows (typed), then the well-known ones."""
    found, problems = source_catalog(config, "contacts")
    if engine is not None:
        try:
            with engine.connect() as conn:
                found.update(custom_contact_types(conn))
        except SQLAlchemyError:
            pass
    found.update(F.CONTACT_FIELDS)
    return found, problems


def known_fields(types: dict[str, str | None], contact_types: dict[str, str | None]) -> FieldTypes:
    return FieldTypes(types, contacts=FieldTypes(contact_types, changes=False))


def _conditions(config: Config, known: FieldTypes) -> tuple[list[tuple[str, Condition | None]],
                                                           Condition | None, list[Problem]]:
    """The segments' conditions and the project-wide exit_when, checked against the known fields.
    Segments are assigned while contacts sync, from account fields alone: no `contacts:` there."""
    doc, problems = load_yaml_file(config.path)
    result: list[tuple[str, Condition | None]] = []
    if doc is None:
        return result, None, problems
    exit_when = None
    if config.exit_when is not None:
        exit_when, errors = parse_condition(doc, ("exit_when",), known)
        problems += errors
    for index, segment in enumerate(config.segments):
        if segment.when is None:
            result.append((segment.name, None))
            continue
        cond, errors = parse_condition(doc, ("segments", index, "when"), FieldTypes(known.types))
        problems += errors
        result.append((segment.name, cond))
    return result, exit_when, problems


def build(config: Config, engine: Engine | None) -> tuple[Runtime, list[Problem]]:
    """Load playbooks and templates for `config`; every problem is returned, none raised."""
    types, problems = field_types(config, engine)
    contact_types, errors = contact_field_types(config, engine)
    problems += errors
    known = known_fields(types, contact_types)
    segments, exit_when, errors = _conditions(config, known)
    problems += errors
    doc, _ = load_yaml_file(config.path)
    health, errors = _health(config, doc, types) if doc is not None else (None, [])
    problems += errors
    _, store_roles = store_catalog(engine)
    ctx = Context(known, tuple(config.segment_names), KNOWN_ROLES | store_roles, config.tz)
    playbooks, errors = load_playbooks(Path(config.playbooks), ctx)
    problems += errors
    values, errors = load_globals(config)
    problems += errors
    templates = Templates(Path(config.templates), config.segment_names, company=config.company, fields=types,
                          contact_fields=contact_types, globals_=values, limits=config.limits)
    required: dict[str, list[Where]] = {}
    for playbook in playbooks:
        for name, where in playbook.templates():
            required.setdefault(name, []).append(where)
    problems += templates.validate(required)
    problems += inline_problems(playbooks, templates, config, types)
    trends = _trend_leaves(playbooks, exit_when)
    problems += _reach_problems(config, trends)
    runtime = Runtime(config, tuple(playbooks), templates, tuple(segments), types, exit_when, health,
                      tuple(dict.fromkeys(leaf.value.within for _, leaf in trends)), contact_types)
    return runtime, problems


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _inline_texts(step: Step) -> Iterable[str]:
    if isinstance(step, TaskStep):
        return [step.title]
    if isinstance(step, SetStep):
        return _strings(dict(step.values))
    return _strings(step.body) if isinstance(step, WebhookStep) else []


def inline_problems(playbooks: Sequence[Playbook], templates: Templates, config: Config,
                    types: Mapping[str, str | None]) -> list[Problem]:
    """Task titles and webhook bodies are templates too: render each with the sample context."""
    context = {**Templates.sample_context(config.company, fields=types), "now": "2026-01-05T09:00:00+00:00"}
    problems = []
    for step in (step for playbook in playbooks for step in playbook.steps):
        for text in _inline_texts(step):
            try:
                templates.render_string(text, context, where=step.where.file)
            except TemplateError as exc:
                why = f"{step_kind(step)} step: {exc.problem.message}"
                problems.append(step.where.problem(why))
    return problems


def load(config_path: Path | None = None, engine: Engine | None = None,
         config: Config | None = None) -> Runtime:
    """Build a Runtime or raise ValidationError listing every problem."""
    config = config or load_config(config_path)
    runtime, problems = build(config, engine)
    if problems:
        raise ValidationError(problems)
    return runtime
