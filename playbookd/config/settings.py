"""config.yaml: every setting declared once, with its default and help; validated at load."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from playbookd.config.base import Model, duration
from playbookd.config.console import Console
from playbookd.config.delivery import Delivery
from playbookd.config.durations import format_duration
from playbookd.config.health import HealthSettings, color_problems
from playbookd.config.report import ReportSettings
from playbookd.config.reserved import reserved_field
from playbookd.config.tasks import Tasks
from playbookd.config.webhooks import Webhooks
from playbookd.config.yaml_loader import Located, load_yaml_file
from playbookd.errors import Problem, UserError, did_you_mean
from playbookd.errors import ValidationError as PlaybookdValidationError

CONFIG_ENV = "PLAYBOOKD_CONFIG"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")




class Company(Model):
    name: str = Field("Acme", description="Sender company name, shown in every email")
    postal_address: str = Field(description="Postal address required in every customer email")
    public_url: str = Field("http://127.0.0.1:8025", description="Base URL of the HTTP listener")


FieldType = Literal["string", "integer", "decimal", "boolean", "date", "datetime"]


class Segment(Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Segment name (template folder)")
    when: dict[str, Any] | None = Field(None, description="Condition; omitted: matches all")


class Source(Model):
    name: str = Field(description="Unique source name")
    kind: Literal["csv", "jsonl", "sql", "http"] = Field(description="Where rows come from")
    entity: Literal["accounts", "contacts", "events"] = Field(description="What a row is")
    path: Path | None = Field(None, description="File for csv and jsonl sources")
    fields: dict[str, str] = Field(default_factory=dict, description="Renames, ours: theirs")
    types: dict[str, FieldType] = Field(default_factory=dict, description="Column types; others are inferred")
    every: timedelta | None = Field(None, description="How often the daemon syncs it")
    url: str | None = Field(None, description="URL (sql: SQLAlchemy URL; http: endpoint)")
    query: str | None = Field(None, description="SQL query for sql sources")
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP headers, e.g. an auth token from ${VAR}")
    records: str | None = Field(None, description="http: dotted key of the record list (default: data, items ...)")
    next: str | None = Field(None, description="http: dotted key of the next page URL (default: Link header, next)")
    max_pages: int = Field(10_000, ge=1, description="http: stop after this many pages")

    @model_validator(mode="after")
    def _needs(self) -> Source:
        required = {"csv": ("path",), "jsonl": ("path",), "sql": ("url", "query"), "http": ("url",)}[self.kind]
        missing = [name for name in required if getattr(self, name) in (None, "")]
        if missing:
            raise ValueError(f"kind {self.kind} needs {' and '.join(missing)}")
        return self

    _every = field_validator("every", mode="before")(
        lambda v: None if v is None else duration(v)
    )


class SchedulerSettings(Model):
    evaluate_every: timedelta = Field(timedelta(minutes=15), description="Evaluation interval")
    deliver_every: timedelta = Field(timedelta(seconds=10), description="Outbox and webhook poll interval")
    sync_every: timedelta = Field(timedelta(hours=1), description="Sync interval of sources without their own `every`")
    _d = field_validator("evaluate_every", "deliver_every", "sync_every", mode="before")(duration)


class Evaluation(Model):
    batch_size: int = Field(500, ge=1, le=5000, description="Accounts per rules-engine batch")
    workers: int = Field(0, ge=0, le=64, description="Rules-engine worker processes at most; 0: one per CPU")
    range_size: int = Field(25_000, ge=1, description="Accounts per range that replicas share out")
    max_failed_accounts: int = Field(0, ge=0, description="Accounts the rules engine may fail on in one "
                                     "evaluation before `run --once` exits 1")
    full_every: timedelta = Field(timedelta(days=1), description="Between these, an evaluation looks only at accounts "
                                  "changed or due since the last one; then every account, as a safety net")
    prefilter: bool = Field(True, description="Read only the accounts that can match the parts of a trigger SQL "
                            "answers (engine.prefilter); false: every account goes through the rules engine")
    _full = field_validator("full_every", mode="before")(duration)


class Http(Model):
    listen: str = Field("127.0.0.1:8025", pattern=r"^.+:\d+$", description="host:port")
    events_token: str | None = Field(
        None, description="Bearer token for POST /events (e.g. ${PLAYBOOKD_EVENTS_TOKEN}); unset: endpoint off")


class Limits(Model):
    render_seconds: float = Field(5.0, gt=0, description="Longest one email may take to render; longer fails that "
                                  "message")
    render_memory_mb: int = Field(256, ge=16, description="Memory one render may take; more fails that message")
    evaluate_batch_seconds: float = Field(60.0, gt=0, description="Longest one rules-engine batch may take; longer "
                                          "splits the batch to isolate the account behind it")
    max_field_bytes: int = Field(65_536, ge=256, description="Largest synced value; a longer one is a row problem")
    header_chars: int = Field(200, ge=20, description="Longest header value (subject, names) taken from data; "
                              "longer is cut with a warning")


class Launch(Model):
    warn_over: int = Field(500, ge=1, description="`simulate --summary` warns when a playbook would send more emails "
                           "than this in its first cycle; a playbook's `launch: {warn_over: N}` overrides it")


class Retention(Model):
    bodies: timedelta = Field(timedelta(days=30), description="Rendered bodies of sent, skipped and dropped mail are "
                              "erased this long after; subject, recipient, state, message-id and times stay")
    audit: timedelta = Field(timedelta(days=400), description="Audit entries older than this are deleted")
    every: timedelta = Field(timedelta(hours=6), description="How often the daemon's leader applies retention")
    batch: int = Field(1000, ge=1, le=100_000, description="Rows per transaction, so no writer waits long")
    _d = field_validator("bodies", "audit", "every", mode="before")(duration)


class Logging(Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "text"] = Field("auto", description="auto: json off a tty")


class Config(Model):
    database: str = Field("sqlite:///playbookd.db", description="SQLAlchemy URL")
    playbooks: Path = Field(Path("playbooks"), description="Folder of playbook YAML files")
    templates: Path = Field(Path("email_templates"), description="Folder of email templates")
    timezone: str = Field("UTC", description="Default time zone for contacts without one")
    company: Company
    segments: list[Segment] = Field(default_factory=lambda: [Segment(name="default", when=None)],
                                    description="In order, first match wins; the last one without `when`")
    sources: list[Source] = Field(default_factory=list, description="Where accounts, contacts and events come from")
    custom_fields: dict[str, FieldType] = Field(
        default_factory=dict, description="Account fields and their types, usable in playbooks before any sync; "
        "a synced value that does not fit is a row problem")
    exit_when: dict[str, Any] | None = Field(None, description="Condition: an account that matches it leaves every "
                                             "playbook and gets nothing more (e.g. churned)")
    health: HealthSettings | None = Field(None, description="Health score: measures, weights and colour limits per "
                                          "segment; unset: no health_score or health_color")
    template_globals: dict[str, Any] | Path = Field(
        default_factory=dict, description="Values every template sees as `globals.<name>`: a mapping, or a YAML "
        "file holding one (re-read on reload)")
    delivery: Delivery = Field(default_factory=Delivery)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    webhooks: Webhooks = Field(default_factory=Webhooks)
    tasks: Tasks = Field(default_factory=Tasks)
    http: Http = Field(default_factory=Http)
    console: Console = Field(default_factory=Console)
    limits: Limits = Field(default_factory=Limits)
    launch: Launch = Field(default_factory=Launch)
    retention: Retention = Field(default_factory=Retention)
    report: ReportSettings = Field(default_factory=ReportSettings)
    logging: Logging = Field(default_factory=Logging)
    path: Path = Field(Path("config.yaml"), exclude=True, description="Where this was loaded from")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as UTC)") from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def segment_names(self) -> list[str]:
        return [s.name for s in self.segments]


def expand_env(data: Any, path: tuple[Any, ...] = ()) -> Any:
    """Replace ${VAR} and ${VAR:-default}; a value that is only an unset ${VAR} becomes null."""
    if isinstance(data, dict):
        return {k: expand_env(v, (*path, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, (*path, i)) for i, v in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data
    whole = _VAR.fullmatch(data)
    if whole and whole.group(1) not in os.environ and whole.group(2) is None:
        return None
    return _VAR.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), data)


def _hint(model: type[BaseModel], key: str) -> str:
    names = [f.alias or n for n, f in model.model_fields.items() if n != "path"]
    return did_you_mean(key, names, f"; known keys: {', '.join(names)}")


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel]:
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        annotation = getattr(info, "annotation", None)
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
            for inner in getattr(candidate, "__args__", ()) or ():
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    model = inner
    return model  # type: ignore[no-any-return]


def _problems(exc: ValidationError, doc: Located) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            message = f"unknown key {dotted!r}{_hint(_model_at(loc), str(loc[-1]))}"
        else:
            message = f"{dotted}: {err['msg']}".replace("Value error, ", "")
        problems.append(doc.problem(loc, message))
    return problems


def _names_problems(config: Config) -> list[tuple[tuple[Any, ...], str]]:
    """Reserved account field names used as custom fields or source columns, and colour limits that do
    not fit the segments: checks across sections, located at the offending key."""
    found: list[tuple[tuple[Any, ...], str]] = [(("custom_fields", name), f"custom_fields: {why}; rename it")
             for name in config.custom_fields if (why := reserved_field(name))]
    for index, source in enumerate(config.sources):
        if source.entity != "accounts":
            continue
        for section in ("fields", "types"):
            found += [(("sources", index, section, name), f"sources.{index}.{section}: {why}; rename it")
                      for name in getattr(source, section) if (why := reserved_field(name))]
    if config.health is not None:
        found += color_problems(config.health, config.segment_names)
    segments = config.segment_names
    found += [(("tasks", "fallback_assignee", name), f"tasks.fallback_assignee: unknown segment {name!r}"
               f"{did_you_mean(name, segments, '; known: ' + ', '.join([*segments, 'default']))}")
              for name in config.tasks.fallback_assignee if name != "default" and name not in segments]
    return found


def _resolve_paths(config: Config, base: Path) -> Config:
    def rel(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    config.playbooks = rel(config.playbooks)
    config.templates = rel(config.templates)
    config.delivery.directory = rel(config.delivery.directory)
    config.console.users_file = rel(config.console.users_file)
    if isinstance(config.template_globals, Path):
        config.template_globals = rel(config.template_globals)
    for source in config.sources:
        if source.path is not None:
            source.path = rel(source.path)
    config.database = _relative_sqlite(config.database, base)
    return config


def _relative_sqlite(url: str, base: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(base / url[len(prefix):])
    return url


def default_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV, "config.yaml"))


def load_config(path: Path | None = None) -> Config:
    """Load, expand and validate config.yaml; raise a ValidationError listing every problem."""
    path = path or default_path()
    if not path.exists():
        raise UserError(f"{path}: no such config file (use --config or {CONFIG_ENV})")
    doc, problems = load_yaml_file(path)
    if doc is None:
        raise PlaybookdValidationError(problems, f"{path}: cannot load config")
    if not isinstance(doc.data, dict):
        raise PlaybookdValidationError([doc.problem((), "config must be a mapping")])
    try:
        config = Config.model_validate(expand_env(doc.data))
    except ValidationError as exc:
        raise PlaybookdValidationError(_problems(exc, doc), f"{path}: invalid config") from None
    if found := _names_problems(config):
        raise PlaybookdValidationError([doc.problem(loc, why) for loc, why in found], f"{path}: invalid config")
    config.path = path.resolve()
    return _resolve_paths(config, path.resolve().parent)


def _shown(value: Any) -> str:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return repr([v.model_dump(exclude_none=True) if isinstance(v, BaseModel) else v for v in value])
    return "" if value is None else repr(value)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The settings model inside an annotation such as `Model`, `Model | None` or `list[Model]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for arg in get_args(annotation) if (m := _model_in(arg)) is not None), None)


def _nesting(annotation: Any) -> str:
    """How a nested setting's key continues: `sources[].name`, `health.colors.<segment>.red`, `smtp.port`."""
    origins = {get_origin(annotation), *(get_origin(arg) for arg in get_args(annotation))}
    return "[]." if list in origins else ".<segment>." if dict in origins else "."


def describe_settings() -> list[tuple[str, str, str]]:
    """(key, default, help) for every setting, for `playbookd settings` and the docs."""
    rows: list[tuple[str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            if model is Config and name == "path":
                continue  # where the file was loaded from, not a setting
            key = prefix + (info.alias or name)
            sub = _model_in(info.annotation)
            if sub is not info.annotation:
                default = "(required)" if info.is_required() else _shown(info.get_default(call_default_factory=True))
                rows.append((key, default, info.description or ""))
            if sub is not None:
                walk(sub, key + _nesting(info.annotation))

    walk(Config, "")
    return rows
