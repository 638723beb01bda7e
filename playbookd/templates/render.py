"""Email templates: segment fallback, front matter, sandboxed rendering and validation.

Layout under the templates folder::

    default/<name>.html.j2      front matter + HTML body (a customer email)
    default/<name>.txt.j2       optional text part; else derived from the HTML
    <segment>/<name>.html.j2    segment override, falls back to default/ (so does .txt.j2)
    _layouts/base.html.j2       {% extends "_layouts/base.html.j2" %}
    _partials/footer.html.j2    {% include "_partials/footer.html.j2" %}

An email starts with front matter between two `---` lines::

    ---
    subject: "{{ account.name }}: your team misses you"   # required, one line, not escaped
    preheader: Three things to try today                  # optional; the body gets it as `preheader`
    from: csm                                             # optional: csm or an address (model.senders)
    ---

Context: account, contact, segment, playbook, csm, company, unsubscribe_url, and globals
(config.yaml's template_globals) in every template. A variable
that does not exist is an error, and so is printing an empty value (None): write
`{{ contact.first_name or "there" }}`. Every email must show `unsubscribe_url` and
`company.postal_address` (itself or through its layout); the text part must carry the link.

Filters (date, money, days_until, first_name): see template_filters.

Every compile and render runs in a render worker process (playbookd.workers) under
`limits.render_seconds` and `limits.render_memory_mb`: a nested loop driven by a synced
number, or a filter asked for a gigabyte, fails that one email with a message naming the
template, the account and the limit, and the worker is replaced. A process, not checks in
the sandbox, because nothing in-process can stop a Jinja loop or a C-level allocation from
another thread, and a memory cap (RLIMIT_AS) can only be set on a whole process. The cost,
a pipe round trip per call, is measured by bench/bench_render.py (one email a call) and
bench/render_queue.py (cadences render GROUP emails a call: `render_many`); the sandbox adds a
cheap size check on `*` and `**` that fails `"a" * 10**9` before it allocates anything.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from playbookd import workers
from playbookd.config.settings import Company, Limits
from playbookd.errors import Problem, Where, did_you_mean
from playbookd.templates import compiled
from playbookd.templates.compiled import Rendered, Spec
from playbookd.templates.errors import TemplateError, fail
from playbookd.templates.sandbox import HTML, TEXT, is_email

DEFAULT = "default"
SHARED = ("_layouts", "_partials")
_NAME = re.compile(r"[A-Za-z0-9][\w-]*(/[A-Za-z0-9][\w-]*)*")
_LOOKS_LIKE_TEMPLATE = (".j2", ".jinja", ".jinja2", ".html", ".htm", ".txt")
_SAMPLE_COMPANY = Company(name="Acme", postal_address="1 Main St, Springfield")
_NO_REQUIRED: Mapping[str, Sequence[Where]] = MappingProxyType({})


class SampleEvent(dict[str, Any]):
    """`event` in validate and preview: event data has no fixed shape, so any key an author names exists."""

    def __missing__(self, key: str) -> int:
        return 5  # a number: prints, compares with numbers and strings, and goes through every filter

    def __contains__(self, key: object) -> bool:
        return True


# ---- the templates folder ------------------------------------------------------------------------

def _scan(root: Path) -> frozenset[str]:
    if not root.is_dir():
        return frozenset()
    found = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
    return frozenset(p.as_posix() for p in found if not any(part.startswith(".") for part in p.parts))


def _sample_value(name: str, kind: str | None) -> Any:
    now = datetime.now(UTC).replace(microsecond=0)
    samples = {"integer": 42, "decimal": 62.5, "boolean": True, "date": date.today() + timedelta(days=30),
               "datetime": now - timedelta(days=2)}
    return samples.get(kind or "", f"sample {name}")


REQUIRED_ACCOUNT = frozenset({"id", "name", "segment", "contacts_active"})  # every synced account has these
REQUIRED_CONTACT = frozenset({"email"})


def without_optional(context: Mapping[str, Any]) -> dict[str, Any]:
    """The context of an account (and contact) that lacks every optional field: each is None."""
    account = {k: (v if k in REQUIRED_ACCOUNT else None) for k, v in context["account"].items()}
    contact = {k: (v if k in REQUIRED_CONTACT else None) for k, v in (context.get("contact") or {}).items()}
    return {**context, "account": account, "contact": contact}


_POOL = workers.Pool(compiled.ready, name="playbookd-render")
GROUP = 25  # emails per worker call when rendering ahead: a round trip shared, a lost group still small


def _account(context: Mapping[str, Any]) -> str:
    account = context.get("account")
    found = account.get("id") if isinstance(account, Mapping) else None
    return f"account {found}" if found else "an account"


class Templates:
    """The templates folder of one configuration; compiled templates are cached until rebuilt."""

    def __init__(self, root: Path, segments: Sequence[str], *, company: Company | None = None,
                 fields: Mapping[str, str | None] | None = None,
                 contact_fields: Mapping[str, str | None] | None = None,
                 globals_: Mapping[str, Any] | None = None, limits: Limits | None = None) -> None:
        # company and fields only shape the sample context that validate() renders with
        self.root = Path(os.path.abspath(root))
        self.segments = tuple(segments)
        self._company = company or _SAMPLE_COMPANY
        self._fields = dict(fields or {})
        self._contact_fields = dict(contact_fields or {})
        self.globals = dict(globals_ or {})  # every template sees them as `globals`
        self._files = _scan(self.root)
        self.limits = limits or Limits()
        self._spec = Spec(uuid.uuid4().hex, str(self.root), self.limits.render_memory_mb * 2**20,
                          self.limits.header_chars)

    def _call(self, file: str, who: str, method: str, *args: Any) -> Any:
        """`method` of the compiled templates, in a render worker, under the render limits."""
        call = workers.Call(compiled.run, (self._spec, method, *args), self.limits.render_seconds,
                            f"rendering {file} for {who}")
        for attempt in (1, 2):
            try:
                kind, value = _POOL.call(call, self.limits.render_memory_mb)
            except workers.TimedOut:
                fail(file, None, f"rendering for {who} took longer than limits.render_seconds "
                                 f"({self.limits.render_seconds:g} s) and was stopped (a loop over a large number?)")
            except workers.OutOfMemory:
                fail(file, None, f"rendering for {who} took more memory than limits.render_memory_mb "
                                 f"({self.limits.render_memory_mb} MB) and was stopped")
            except workers.WorkerDied as exc:
                if attempt == 1:
                    continue  # a worker killed from outside, not by this template: once more on a fresh one
                fail(file, None, f"rendering for {who}: {exc}")
            except workers.WorkerFailed as exc:
                fail(file, None, str(exc))
            if kind == "problem":
                raise TemplateError(value)
            return value
        raise AssertionError("unreachable")

    def _path(self, rel: str) -> str:
        return str(self.root / rel)

    def _folders(self) -> tuple[str, ...]:
        return (DEFAULT, *self.segments)

    def names(self) -> set[str]:
        """Logical names (`login_nudge`) of every email in default/ and the segment folders."""
        folders = self._folders()
        return {rel.partition("/")[2][: -len(HTML)] for rel in self._files
                if is_email(rel) and rel.partition("/")[0] in folders}

    def _hint(self, name: str) -> str:
        return did_you_mean(name, sorted(self.names() - {name}))

    def resolve(self, name: str, segment: str) -> str:
        """`segment/name.html.j2` if it exists, else `default/name.html.j2`."""
        found = self._pick(name, segment, HTML)
        if found is None:
            why = f"template '{name}' not found: no {segment}/{name}{HTML} and no {DEFAULT}/{name}{HTML}"
            fail(str(self.root), None, why + self._hint(name))
        return found

    def _pick(self, name: str, segment: str, suffix: str) -> str | None:
        if not _NAME.fullmatch(name):
            return None
        return next((rel for rel in (f"{segment}/{name}{suffix}", f"{DEFAULT}/{name}{suffix}")
                     if rel in self._files), None)

    def render(self, name: str, segment: str, context: Mapping[str, Any]) -> Rendered:
        """Subject, preheader, HTML and text of one email; any problem is a TemplateError."""
        context = {**context, "globals": self.globals}
        rel = self.resolve(name, segment)
        rendered: Rendered = self._call(self._path(rel), _account(context), "render", rel,
                                        self._pick(name, segment, TEXT), context)
        return rendered

    def render_many(self, jobs: Sequence[tuple[str, str, Mapping[str, Any]]]) -> list[Rendered | TemplateError | None]:
        """Many emails rendered ahead of their turn, GROUP to a worker call: each one's Rendered or
        TemplateError, or None where it was not rendered. The limits bound a whole group as they bound
        one email; a group that goes past them (or whose worker dies) gives None for each of its emails,
        which are then rendered alone with `render`, each under its own limits, so the one that broke
        them fails with its own message and the others go on."""
        found: list[Rendered | TemplateError | None] = [None] * len(jobs)
        calls = []
        for i, (name, segment, context) in enumerate(jobs):
            rel = self._pick(name, segment, HTML)
            if rel is not None:
                calls.append((i, (rel, self._pick(name, segment, TEXT), {**context, "globals": self.globals})))
        for start in range(0, len(calls), GROUP):
            group = calls[start:start + GROUP]
            call = workers.Call(compiled.run, (self._spec, "render_many", [job for _, job in group]),
                                self.limits.render_seconds, f"rendering {len(group)} emails ahead")
            try:
                kind, value = _POOL.call(call, self.limits.render_memory_mb)
            except (workers.LimitExceeded, workers.WorkerDied, workers.WorkerFailed):
                continue  # each is rendered alone when its turn comes
            if kind == "ok":
                for (i, _), one in zip(group, value, strict=True):
                    found[i] = TemplateError(one) if isinstance(one, Problem) else one
        return found

    def render_string(self, source: str, context: Mapping[str, Any], where: str = "<inline template>") -> str:
        """A one-off template (task title, webhook body): sandboxed and strict, not escaped."""
        text: str = self._call(where, _account(context), "render_string", source,
                               {**context, "globals": self.globals}, where)
        return text

    @staticmethod
    def sample_context(company: Company, *, segment: str = DEFAULT,
                       fields: Mapping[str, str | None] | None = None,
                       contact_fields: Mapping[str, str | None] | None = None) -> dict[str, Any]:
        """A realistic context for validate and preview: every key filled in, as the daemon would."""
        now = datetime.now(UTC).replace(microsecond=0)
        account = {name: _sample_value(name, kind) for name, kind in (fields or {}).items()}
        account.update({
            "id": "acc_1042", "name": "Globex Corporation", "arr": 48000, "plan": "growth",
            "lifecycle_stage": "adopted", "status": "active",
            "renewal_date": date.today() + timedelta(days=45), "last_login_at": now - timedelta(days=9),
            "open_escalations": 0, "nps": 8, "health": 72,
            "csm_email": "dana.scully@example.com", "segment": segment, "contacts_active": 4,
            "champion_left_at": now - timedelta(days=3), "admin_left_at": now - timedelta(days=3),
        })
        # custom fields only when the sources have them, so a template that needs one the project lacks fails here
        account.update({k: v for k, v in {"seats_purchased": 50, "seats_used": 31}.items() if k in (fields or {})})
        contact = {name: _sample_value(name, kind) for name, kind in (contact_fields or {}).items()
                   if name != "account_id"}
        contact.update({"email": "jordan.rivera@globex.example", "first_name": "Jordan", "last_name": "Rivera",
                        "role": "admin", "timezone": "America/New_York", "status": "active", "is_primary": True})
        return {
            "account": account, "contact": contact, "segment": segment,
            "playbook": {"id": "sample-playbook", "name": "Sample playbook", "category": "default"},
            "csm": {"name": "Dana Scully", "email": "dana.scully@example.com"},
            "company": company.model_dump(),
            "unsubscribe_url": f"{company.public_url.rstrip('/')}/unsubscribe/sample-token",
            "event": SampleEvent(name="sample_event", occurred_at=now - timedelta(hours=1)),
        }

    # ---- validate --------------------------------------------------------------------------------

    def validate(self, required: Mapping[str, Sequence[Where]] = _NO_REQUIRED) -> list[Problem]:
        """Every problem in every template file, plus template names playbooks use but that are missing."""
        problems = set(self._folder_problems())
        for rel in sorted(self._files):
            problems.update(self._file_problems(rel))
        problems.update(self._render_problems())
        problems.update(self._required_problems(required))
        return sorted(problems)

    def _folder_problems(self) -> Iterator[Problem]:
        known = {*self._folders(), *SHARED}
        tops = {rel.partition("/")[0] for rel in self._files if "/" in rel}
        for top in sorted(tops - known):
            hint = did_you_mean(top, self._folders(), f"; folders are: {', '.join(self._folders())}")
            yield Problem(self._path(top), None, None, f"unknown segment folder '{top}'{hint}")

    def _file_problems(self, rel: str) -> Iterator[Problem]:
        top, _, rest = rel.partition("/")
        loose = not rest and rel.endswith(".j2")
        misnamed = bool(rest) and top not in SHARED and rel.endswith(_LOOKS_LIKE_TEMPLATE)
        if loose or (misnamed and not rel.endswith((HTML, TEXT))):
            yield Problem(self._path(rel), None, None, "not a usable template: emails are "
                          f"<folder>/<name>{HTML} (body) and <folder>/<name>{TEXT} (text part)")
            return
        for check, wanted in (("check_head", is_email(rel)), ("compile", rel.endswith(".j2"))):
            if wanted:
                try:
                    self._call(self._path(rel), "the check", check, rel)
                except TemplateError as exc:
                    yield exc.problem

    def _render_both_ways(self, name: str, segment: str, context: dict[str, Any]) -> Iterator[Problem]:
        """With every field filled in, then with every optional one missing, as some accounts will be."""
        for sparse, ctx in ((False, context), (True, without_optional(context))):
            try:
                self.render(name, segment, ctx)
            except TemplateError as exc:
                problem = exc.problem
                if sparse:
                    why = (f"for an account or contact without its optional fields: {problem.message} "
                           "(guard them: `{{ account.plan or \"your plan\" }}`, `{% if account.nps %}`)")
                    problem = Problem(problem.file, problem.line, problem.col, why)
                yield problem
                return

    def _render_problems(self) -> Iterator[Problem]:
        for name in sorted(self.names()):
            for segment in self.segments or (DEFAULT,):
                if self._pick(name, segment, HTML) is None:
                    continue  # a missing version is reported where a playbook uses it
                context = self.sample_context(self._company, segment=segment, fields=self._fields,
                                              contact_fields=self._contact_fields)
                yield from self._render_both_ways(name, segment, context)
        names = self.names()
        for rel in sorted(self._files):
            name = rel.partition("/")[2][: -len(TEXT)]
            if rel.endswith(TEXT) and rel.partition("/")[0] in self._folders() and name not in names:
                yield Problem(self._path(rel), None, None, f"text part without an email: no {name}{HTML} "
                              f"in {DEFAULT}/ or a segment folder")

    def _missing(self, name: str) -> list[str] | None:
        """Segments without a version of `name`; None when every email of `name` can be resolved."""
        if self._pick(name, DEFAULT, HTML):
            return None
        missing = [s for s in self.segments if self._pick(name, s, HTML) is None]
        return missing if missing or not self.segments else None

    def _required_problems(self, required: Mapping[str, Sequence[Where]]) -> Iterator[Problem]:
        for name, places in required.items():
            missing = self._missing(name)
            if missing is None:
                continue
            why = f"template '{name}' not found: no {DEFAULT}/{name}{HTML}"
            if missing:
                why += f" and no version for segment(s) {', '.join(missing)}"
            for where in places:
                yield where.problem(why + self._hint(name))
