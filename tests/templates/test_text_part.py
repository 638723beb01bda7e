"""The text part derived from the HTML: reusing the parsed opening gives what one whole pass gives."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from playbookd.config.settings import Company
from playbookd.templates import placeholders, text_part
from playbookd.templates.compiled import Compiled, Spec
from playbookd.templates.errors import TemplateError
from playbookd.templates.placeholders import shape_of
from playbookd.templates.render import GROUP, TEXT, Templates
from playbookd.templates.text_part import Deriver, Shapes, html_to_text

SHIPPED = Path(__file__).resolve().parents[2] / "email_templates"
GLOBALS = yaml.safe_load((SHIPPED.parent / "config.yaml").read_text())["template_globals"]
SEGMENTS = ("high_touch", "low_touch", "tech_touch")
COMPANY = Company(name="Acme", postal_address="1 Main St, Springfield")

# names that html2text treats specially somewhere: escapes, entities, list and heading markers at the
# start of a line, links, long words that wrap, characters from outside ASCII, line breaks
NAMES = ["Jordan", "O'Brien & Sons", "<b>Bold</b> Corp", "1. First", "- dash", "+ plus", "# hash",
         "[link](http://x)", "a_b*c`d", "Zoë Ångström", "Ünïcödé 株式会社", "x" * 120,
         "word " * 30, "line\nbreak", "  padded  ", "back\\slash", "http://example.com/path",
         "Globex 12 Corp", "has 4 seats", "x" * 20_000, "Acme", "a://x"]


LONE = "lone \ud800 half"  # event JSON can carry one; the store cannot: no email shows it, every shape sees it


def derived_emails() -> list[tuple[str, str]]:
    templates = Templates(SHIPPED, SEGMENTS, company=COMPANY)
    return [(name, segment) for name in sorted(templates.names()) for segment in SEGMENTS
            if templates._pick(name, segment, TEXT) is None]


def contexts(segment: str) -> list[dict[str, Any]]:
    base = Templates.sample_context(COMPANY, segment=segment)
    found = []
    for i, name in enumerate(NAMES):
        found.append({**base, "globals": GLOBALS,
                      "account": {**base["account"], "name": name, "arr": 1000 * i, "note": LONE},
                      "contact": {**base["contact"], "first_name": NAMES[-1 - i]}})
    return found


@pytest.mark.parametrize(("name", "segment"), derived_emails())
def test_each_shipped_email_derives_the_text_a_whole_pass_gives(name: str, segment: str) -> None:
    templates = Templates(SHIPPED, SEGMENTS, company=COMPANY)
    compiled = Compiled(Spec("test", str(SHIPPED), 256 * 2**20, 200))
    rel = templates.resolve(name, segment)
    for context in contexts(segment):
        rendered = compiled.render(rel, None, context)
        assert rendered.text == html_to_text(rendered.html), context["account"]["name"]
    assert compiled._derivers[rel].whole._state is not None  # the opening was reused, not parsed each time


OPENING = "<html><head><style>p { margin: 0 }</style></head><body>" + "<p>Same opening text.</p>\n" * 30


def test_an_email_that_begins_otherwise_gets_the_whole_pass() -> None:
    deriver = Deriver()
    first, second = OPENING + "<p>Hi Ann</p></body></html>", OPENING + "<p>Hi Bob</p></body></html>"
    assert deriver.text(first) == html_to_text(first)
    assert deriver.text(second) == html_to_text(second)
    assert deriver._state is not None
    other = "<html><body><p>Something else entirely, " + "and long " * 80 + "</p></body></html>"
    assert deriver.text(other) == html_to_text(other)
    third = OPENING + "<ul><li>one</li><li>two &amp; three</li></ul></body></html>"
    assert deriver.text(third) == html_to_text(third)


def test_a_short_opening_is_not_kept() -> None:
    deriver = Deriver()
    deriver.text("<p>Hi Ann</p>")
    deriver.text("<p>Hi Bob</p>")
    assert deriver._state is None


def test_emails_that_differ_only_in_plain_values_share_one_shape() -> None:
    compiled = Compiled(Spec("test", str(SHIPPED), 256 * 2**20, 200))
    base = Templates.sample_context(COMPANY, segment="low_touch")
    rel = "default/onboarding_welcome.html.j2"
    for i in range(12):
        context = {**base, "globals": GLOBALS, "unsubscribe_url": f"https://acme.example/unsubscribe/t{i}-x_y",
                   "account": {**base["account"], "name": f"Firm {i} Holdings", "seats_purchased": 10 + i},
                   "contact": {**base["contact"], "first_name": f"Jo{'an' * (i + 1)}"}}
        rendered = compiled.render(rel, None, context)
        assert rendered.text == html_to_text(rendered.html)
    shapes = compiled._derivers[rel]
    assert shapes.trusted and shapes._reused >= 10


@pytest.mark.parametrize("html", [
    '<p class="Jordan">Hi Jordan</p>',  # in an attribute html2text may read
    '<p style="display:none">Jordan</p><div title="x Jordan">y</div>',
    "<p>Hi Jordan \ue000</p>",  # a placeholder's own character
    '<div title="a>b" style="Jordan">x</div>',  # a quoted ">" does not end the tag
    "<p>Hi</p><!-- Jordan --><p>x</p>",
    "<p a=b\" title='>' class=\"Jordan\">x</p>",  # a quote that opens no value
])
def test_a_value_where_a_placeholder_could_change_the_reading_gives_no_shape(html: str) -> None:
    assert shape_of(html, ["Jordan"]) is None


def test_a_well_formed_email_gets_a_shape() -> None:
    html = ('<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1">'
            '<html><body><!--[if mso]><p>x</p><![endif]--><p class="a" data-x=\'y\'>Hi Jordan<br/></p>'
            '<a href="https://x.com/Jordan" target=_blank>Jordan</a></body></html>')
    found = shape_of(html, ["Jordan"])
    assert found is not None and "Jordan" not in found[0]


def test_values_html2text_would_change_stay_in_the_shape() -> None:
    html = "<p>Hi 1. First</p><p>Hi [x](y)</p><p>Hi Jordan</p><p>Ann has 12 seats. 12</p>"
    found = shape_of(html, ["1. First", "[x](y)", "Jordan", "12"])
    assert found is not None
    shape, values = found
    assert "1. First" in shape and "[x](y)" in shape and "Jordan" not in shape
    assert "has \ue0001\ue001 seats. 12" in shape and values == ["Jordan", "12"]


def shaped_text(template: str, first: str, value: str) -> str:
    """The text Shapes gives an email after a first one of the same template has taught it the shape."""
    shapes = Shapes()
    shapes.text(template.format(v=escape(first)), [first])
    return shapes.text(template.format(v=escape(value)), [value])


@pytest.mark.parametrize(("template", "first", "value"), [
    ("<p>{v} - your weekly digest</p>", "Ops Team", "Ops Team'"),  # an escaped quote splits the text
    ("<p>Hi {v}</p>", "Ann-Marie", "Ann'--Marie"),
    ('<p><a href="{v}">{v}</a></p>', "https://x.com/Jordan", "https://x.com/O'Brien"),  # no longer the address
    ("<p>Hi {v}<del>old</del></p>", "Alice", "Alice~"),  # a strike after a tilde gets a space
    ('<div title="a>b" style="{v}">Secret offer</div><p>Hi</p>', "color:red", "display:none"),
    ("<div title='a>b' style=\"{v}\">Secret offer</div><p>Hi</p>", "color:red", "display:none"),
    ('<p><a href="/x?a&{v}">here</a></p>', "Jordan", "copy"),  # runs into a character reference
    ("<p>Hi</p><!-- x -- >{v}<p>{v}</p>", "Jordan", "Ann-Marie"),
    ("<p><a href={v}>here</a></p>", "Jordan", "Ann Lee"),  # unquoted, the space ends the address
])
def test_shapes_give_what_the_whole_pass_gives(template: str, first: str, value: str) -> None:
    assert shaped_text(template, first, value) == html_to_text(template.format(v=escape(value)))


# characters html2text escapes, collapses or reads together with what stands next to them: mostly those
# a value may have and still be put in as a placeholder, so that shapes are made and reused
WORDY = st.text(st.sampled_from([*"aZö株09 '~-_.,:/#+=?%@"]), max_size=12)
TRICKY = st.text(st.sampled_from([*"aZ09 '~-*_`#+!.,:;/[]()|>&<\"\\=?%@\n\t", "ö", "\xa0"]), max_size=12)
VALUES = st.builds(lambda head, tail: head + tail, st.sampled_from(["Ann", "https://x.com/", "12", ""]),
                   st.one_of(WORDY, WORDY, TRICKY))
SMALL = ["<p>{v} - your weekly digest</p><p>{v}<del>old</del> {v}</p>",
         '<p><a href="{v}">{v}</a></p><div style="{v}">Hi {v}</div>',
         "<ul><li>{v}</li></ul><p>Seats: {v}. Thanks {v}</p>"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SMALL), VALUES, VALUES)
def test_any_value_gets_the_text_the_whole_pass_gives(template: str, first: str, value: str) -> None:
    assert shaped_text(template, first, value) == html_to_text(template.format(v=escape(value)))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["default/onboarding_welcome.html.j2", "default/login_nudge_help.html.j2",
                        "tech_touch/renewal_escalation.html.j2"]), VALUES, VALUES)
def test_any_value_in_a_shipped_email_gets_the_text_the_whole_pass_gives(rel: str, name: str, first: str) -> None:
    compiled = Compiled(Spec("test", str(SHIPPED), 256 * 2**20, 200))
    base = Templates.sample_context(COMPANY, segment="tech_touch")
    for shown in (("Jordan Lee", "Ann"), (name, first)):  # the first teaches the shape the second may reuse
        context = {**base, "globals": GLOBALS, "account": {**base["account"], "name": shown[0]},
                   "contact": {**base["contact"], "first_name": shown[1]}}
        rendered = compiled.render(rel, None, context)
        assert rendered.text == html_to_text(rendered.html)


PIECES = ["a", " ", "\n", "  ", "* ", "  * ", "> ", "word ", "x" * 90, "http://x.example/y ", "\t", "1. ", "| ",
          "```", "-", "[a](http://b)"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60))
def test_wrapping_a_paragraph_at_a_time_gives_what_optwrap_gives(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert text_part.optwrap(text) == text_part._WRAPPER.optwrap(text)
    assert text_part.optwrap(text) == text_part._WRAPPER.optwrap(text)  # and again, from what was kept


@pytest.mark.parametrize("segment", SEGMENTS)
def test_the_shipped_emails_wrap_as_optwrap_wraps_them(segment: str) -> None:
    compiled = Compiled(Spec("test", str(SHIPPED), 256 * 2**20, 200))
    templates = Templates(SHIPPED, SEGMENTS, company=COMPANY)
    for name, _ in derived_emails():
        for context in contexts(segment)[:4]:
            parser = text_part._parser()
            parser.feed(compiled.render(templates.resolve(name, segment), None, context).html)
            unwrapped = text_part._unwrapped(parser)
            assert text_part.optwrap(unwrapped) == text_part._WRAPPER.optwrap(unwrapped), name


def test_what_a_worker_keeps_of_wrapped_paragraphs_is_bounded() -> None:
    """A worker renders many emails: a long paragraph (a synced note) is wrapped but not kept, and
    no more than PARAGRAPHS short ones are, whatever the emails hold."""
    text_part._PARAGRAPHS.clear()
    long = "word " * (text_part.KEPT_BYTES // 5 + 1)
    wide = "\U0001f600" * (text_part.KEPT_BYTES // 4)  # fewer characters than bytes allowed, four bytes each
    for para in (long, wide):
        assert text_part.optwrap(para) == text_part._WRAPPER.optwrap(para)
        assert para not in text_part._PARAGRAPHS
    for n in range(text_part.PARAGRAPHS + 10):
        text_part.optwrap(f"note {n}")
    assert 0 < len(text_part._PARAGRAPHS) <= text_part.PARAGRAPHS
    kept = sum(sys.getsizeof(para) + sys.getsizeof(piece) for para, (piece, _) in text_part._PARAGRAPHS.items())
    assert kept <= text_part.PARAGRAPHS * 2 * (text_part.KEPT_BYTES + 2)


def test_emails_rendered_ahead_in_workers_are_those_rendered_in_process() -> None:
    """render_many (contexts to a worker, GROUP emails a call) gives each email what one render in
    this process gives, and an email that fails takes no other with it."""
    templates = Templates(SHIPPED, SEGMENTS, company=COMPANY, globals_=GLOBALS)
    compiled = Compiled(Spec("test", str(SHIPPED), 256 * 2**20, 200))
    jobs: list[tuple[str, str, dict[str, Any]]] = []
    for name, segment in derived_emails()[::3]:
        jobs += [(name, segment, context) for context in contexts(segment)]
    broken = {**contexts("tech_touch")[0], "company": {"name": "Acme"}}  # no public_url
    jobs.insert(7, ("login_nudge_help", "tech_touch", broken))
    found = templates.render_many(jobs)
    assert len(jobs) > 2 * GROUP
    for (name, segment, context), result in zip(jobs, found, strict=True):
        rel = templates.resolve(name, segment)
        if context is broken:
            assert isinstance(result, TemplateError) and "login_nudge_help.html.j2:10: undefined" in str(result)
        else:
            assert result == compiled.render(rel, None, context), (rel, context["account"]["name"][:40])


def test_what_a_worker_keeps_of_shapes_and_values_is_bounded() -> None:
    numbered = placeholders._NUMBERED
    for n in range(2000):
        placeholders.shape_of(f"<p>{'x' * 2000} {n} Jordan</p>", ["Jordan"])
        placeholders._facts(f"value {n}")
    assert numbered._weight <= numbered.budget and sum(w for _, w in numbered._old.values()) <= numbered.budget
    assert len(placeholders._FACTS) <= placeholders.FACTS


def test_what_a_worker_keeps_is_weighed_in_the_bytes_it_holds_not_in_characters() -> None:
    """The bounds are for the worker's memory limit: a string of four-byte characters weighs four
    times one of letters, and a value's quoted form (nine characters for each such one) counts too."""
    shape = "<p>" + "\U0001f600" * 3000 + " Jordan</p>"
    placeholders.shape_of(shape, ["Jordan"])
    placed = placeholders._placed(shape, ["Jordan"])
    assert placed is not None
    weight = placeholders._NUMBERED._young[placed[0]][1]
    assert weight >= sys.getsizeof(placed[0]) > 4 * len(placed[0])  # counted as two bytes a character, it was less
    placeholders._FACTS.clear()
    wide = "株式会社" * 30  # 120 characters: shorter than what was kept in characters, 1,080 once quoted
    placeholders._facts(wide)
    assert wide not in placeholders._FACTS
    placeholders._facts("Jordan Rivera")
    assert "Jordan Rivera" in placeholders._FACTS
