"""The Jinja side of a templates folder: compiled templates and how one email is rendered.

This runs inside a render worker process (see templates.render for why); the parent sends
a `Spec` with each call, and the worker keeps the compiled templates of the latest few
specs, so a reload (a new spec) never sees a template compiled before it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import escape

from playbookd.errors import Problem
from playbookd.model.headers import header_value
from playbookd.templates.errors import TemplateError, fail, located
from playbookd.templates.front_matter import Head, Part, check_front, front_matter, header_line
from playbookd.templates.sandbox import environment
from playbookd.templates.text_part import Shapes, shown_values

KEEP = 4  # specs whose compiled templates a worker keeps: the running set and a reload or two


@dataclass(frozen=True)
class Spec:
    token: str  # one per Templates object: a reload never reuses what an older one compiled
    root: str  # text, not a Path: it crosses a pipe with every call
    max_bytes: int
    header_chars: int  # limits.header_chars: a subject or preheader from data is cut there


@dataclass(frozen=True)
class Rendered:
    template: str  # resolved path under the templates folder, e.g. "tech_touch/login_nudge.html.j2"
    subject: str
    preheader: str | None
    html: str
    text: str
    cut: tuple[str, ...] = ()  # "subject", "preheader": cut at limits.header_chars, to be recorded
    sender: str | None = None  # the front matter's `from:`, as written (model.senders decides what it means)


def _shows(html: str, value: str) -> bool:
    # an address may be split over lines (<br>) by the layout: every line of it must be there
    parts = [p.strip() for p in value.splitlines() if p.strip()] or [value]
    return all(p in html or str(escape(p)) in html for p in parts)


class Compiled:
    def __init__(self, spec: Spec) -> None:
        self.root = Path(spec.root)
        self._env = environment(self.root, spec.max_bytes)
        self.header_chars = spec.header_chars
        self._heads: dict[str, Head] = {}
        self._strings: dict[str, jinja2.Template] = {}
        self._derivers: dict[str, Shapes] = {}  # the text part derived from the HTML, per email template

    def _path(self, rel: str) -> str:
        return str(self.root / rel)

    def head(self, rel: str) -> Head:
        head = self._heads.get(rel)
        if head is None:
            head = self._heads[rel] = self._compile_head(rel)
        return head

    def check_head(self, rel: str) -> None:
        self.head(rel)

    def _compile_head(self, rel: str) -> Head:
        file = self._path(rel)
        try:
            source = (self.root / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(file, None, f"cannot read: {exc}")
        meta, lines = front_matter(source.removeprefix("\ufeff"), file)
        check_front(meta, lines, file)
        parts = {}
        for key, value in meta.items():
            if value in (None, ""):
                continue  # an empty preheader is no preheader
            with located(self.root, file, lines[key] - 1):
                parts[key] = Part(self._env.from_string(str(value)), file, lines[key])
        sender = meta.get("from")
        return Head(parts["subject"], parts.get("preheader"), str(sender).strip() if sender else None)

    def compile(self, rel: str) -> None:
        with located(self.root, self._path(rel)):
            self._env.get_template(rel)

    def render(self, rel: str, text_rel: str | None, context: Mapping[str, Any]) -> Rendered:
        head = self.head(rel)
        limit = self.header_chars
        subject, cut = header_line(head.subject.render(self.root, context), head.subject, "subject", limit)
        preheader, cut_preheader = None, False
        if head.preheader is not None:
            preheader, cut_preheader = header_value(head.preheader.render(self.root, context), limit)
        # the blanked front matter (kept for line numbers) would open the HTML with empty lines
        shown = {**context, "preheader": preheader}
        html = self._render_file(rel, shown).lstrip()
        text = self._render_file(text_rel, context) if text_rel else self._derived(rel, html, shown)
        self._check_footer(rel, text_rel, html, text, context)
        return Rendered(rel, subject, preheader or None, html, text,
                        tuple(n for n, was in (("subject", cut), ("preheader", cut_preheader)) if was), head.sender)

    def render_many(self, jobs: list[tuple[str, str | None, Mapping[str, Any]]]) -> list[Rendered | Problem]:
        """Several emails in one call (one pipe round trip); each problem stays with its email."""
        done: list[Rendered | Problem] = []
        for rel, text_rel, context in jobs:
            try:
                done.append(self.render(rel, text_rel, context))
            except TemplateError as exc:
                done.append(exc.problem)
        return done

    def _derived(self, rel: str, html: str, context: Mapping[str, Any]) -> str:
        deriver = self._derivers.get(rel)
        if deriver is None:
            deriver = self._derivers[rel] = Shapes()
        return deriver.text(html, shown_values(context))

    def _render_file(self, rel: str, context: Mapping[str, Any]) -> str:
        with located(self.root, self._path(rel)):
            return self._env.get_template(rel).render(context)

    def _check_footer(self, rel: str, text_rel: str | None, html: str, text: str,
                      context: Mapping[str, Any]) -> None:
        company = context.get("company") or {}
        needed = {"unsubscribe_url": context.get("unsubscribe_url"),
                  "company.postal_address": company.get("postal_address")}
        for key, value in needed.items():
            if not value:
                fail(self._path(rel), None, f"the context has no {key}")
            if not _shows(html, str(value)):
                fail(self._path(rel), None, f"the email does not show {{{{ {key} }}}} "
                      "(every customer email must, itself or through its layout)")
        if str(needed["unsubscribe_url"]) not in text:
            where = self._path(text_rel) if text_rel else self._path(rel) + " (text part derived from it)"
            fail(where, None, "the text part does not contain the unsubscribe_url")

    def render_string(self, source: str, context: Mapping[str, Any], where: str) -> str:
        with located(self.root, where, 0, source):
            template = self._strings.get(source)
            if template is None:
                if len(self._strings) > 1000:  # titles are few; this only bounds a pathological caller
                    self._strings.clear()
                template = self._strings[source] = self._env.from_string(source)
            return template.render(context)


_compiled: OrderedDict[str, Compiled] = OrderedDict()


def _for(spec: Spec) -> Compiled:
    found = _compiled.get(spec.token)
    if found is None:
        found = _compiled[spec.token] = Compiled(spec)
        while len(_compiled) > KEEP:
            _compiled.popitem(last=False)
    _compiled.move_to_end(spec.token)
    return found


def run(spec: Spec, method: str, *args: Any) -> tuple[str, Any]:
    """A call from the parent: ("ok", value) or ("problem", Problem); a Problem pickles whole, an
    exception would lose it."""
    try:
        return "ok", getattr(_for(spec), method)(*args)
    except TemplateError as exc:
        return "problem", exc.problem


def ready() -> None:
    """The worker's initializer: importing this module (Jinja, html2text) before the memory cap is
    measured keeps the imports out of what one render may take."""


__all__ = ["Compiled", "Problem", "Rendered", "Spec", "ready", "run"]
