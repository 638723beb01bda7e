from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from playbookd.config.settings import Company, Limits
from playbookd.errors import Problem, Where
from playbookd.templates.render import Rendered, TemplateError, Templates

SEGMENTS = ["high_touch", "low_touch", "tech_touch"]
COMPANY = Company(name="Acme", postal_address="1 Main St, Springfield", public_url="http://127.0.0.1:8025")
UNSUB = "http://127.0.0.1:8025/unsubscribe/tok_123-abc"

BASE = """<html><body>
{% if preheader %}<div style="display:none">{{ preheader }}</div>{% endif %}
{% block body %}{% endblock %}
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> | {{ company.postal_address }}</p>
<img src="https://cdn.example/logo.png" alt="Acme logo">
</body></html>
"""

NUDGE = """---
subject: "{{ account.name }}: we miss you"
preheader: Log in to see what's new
---
{% extends "_layouts/base.html.j2" %}
{% block body %}<p>Hi {{ contact.first_name or "there" }},</p>
<p>Your team has {{ account.contacts_active }} active teammates. <a href="https://app.example/login">Log in</a></p>
{% endblock %}
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


SEATS = {"seats_used": "integer", "seats_purchased": "integer"}


def email(body: str, subject: str = "Hello {{ contact.first_name or 'there' }}") -> str:
    return f'---\nsubject: "{subject}"\n---\n{{% extends "_layouts/base.html.j2" %}}\n' \
           f"{{% block body %}}{body}{{% endblock %}}\n"


def context(**overrides: Any) -> dict[str, Any]:
    ctx = Templates.sample_context(COMPANY, segment="tech_touch", fields=SEATS)
    ctx["unsubscribe_url"] = UNSUB
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(ctx.get(key), dict):
            ctx[key] = {**ctx[key], **value}
        else:
            ctx[key] = value
    return ctx


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "email_templates"
    write(root, "_layouts/base.html.j2", BASE)
    write(root, "default/login_nudge.html.j2", NUDGE)
    return root


def render(root: Path, name: str = "login_nudge", segment: str = "tech_touch", **overrides: Any) -> Rendered:
    return Templates(root, SEGMENTS, company=COMPANY).render(name, segment, context(**overrides))


def error(root: Path, name: str = "login_nudge", segment: str = "tech_touch", **overrides: Any) -> Problem:
    with pytest.raises(TemplateError) as caught:
        render(root, name, segment, **overrides)
    assert str(caught.value) == str(caught.value.problem)
    return caught.value.problem


# ---- resolution and fallback ---------------------------------------------------------------------

def test_default_renders_with_subject_preheader_and_layout(root: Path) -> None:
    out = render(root, segment="high_touch")
    assert out.template == "default/login_nudge.html.j2"
    assert out.subject == "Globex Corporation: we miss you"
    assert out.preheader == "Log in to see what's new"
    assert '<div style="display:none">Log in to see what&#39;s new</div>' in out.html
    assert "Hi Jordan," in out.html and "4 active teammates" in out.html
    assert UNSUB in out.html and "1 Main St, Springfield" in out.html
    assert out.html.startswith("<"), "no blank lines where the front matter was"


def test_segment_override_html_and_text_fall_back_independently(root: Path) -> None:
    write(root, "tech_touch/login_nudge.html.j2", email("<p>Tech touch {{ segment }}</p>", "Tech"))
    write(root, "default/login_nudge.txt.j2", "Default text {{ unsubscribe_url }}\n")
    write(root, "low_touch/login_nudge.txt.j2", "Low text {{ unsubscribe_url }}\n")
    tech = render(root, segment="tech_touch")
    assert (tech.template, tech.subject) == ("tech_touch/login_nudge.html.j2", "Tech")
    assert "Tech touch tech_touch" in tech.html and tech.text.startswith("Default text")
    low = render(root, segment="low_touch")
    assert low.template == "default/login_nudge.html.j2" and low.text.startswith("Low text")
    high = render(root, segment="high_touch")
    assert high.template == "default/login_nudge.html.j2" and high.text.startswith("Default text")


def test_resolve_and_names(root: Path) -> None:
    write(root, "tech_touch/only_tech.html.j2", email("x"))
    write(root, "_partials/footer.html.j2", "footer")
    templates = Templates(root, SEGMENTS)
    assert templates.names() == {"login_nudge", "only_tech"}
    assert templates.resolve("only_tech", "tech_touch") == "tech_touch/only_tech.html.j2"
    assert templates.resolve("login_nudge", "tech_touch") == "default/login_nudge.html.j2"
    with pytest.raises(TemplateError, match=r"template 'only_tech' not found.*high_touch/only_tech"):
        templates.resolve("only_tech", "high_touch")
    with pytest.raises(TemplateError, match="did you mean 'login_nudge'"):
        templates.resolve("login_nudg", "tech_touch")
    with pytest.raises(TemplateError, match="not found"):
        templates.resolve("../_layouts/base", "tech_touch")


# ---- front matter --------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "line", "why"), [
    ("<p>no front matter</p>\n", 1, "missing front matter"),
    ("---\nsubject: Hi\n<p>body</p>\n", 1, "not closed"),
    ("---\npreheader: Hi\n---\nbody\n", 1, "no subject"),
    ("---\nsubject: Hi\nsubjct: Hi\n---\nx\n", 3, "key 'subjct'; did you mean 'subject'?"),
    ("---\nsubject: Hi\npreheader: [unclosed\n---\nbody\n", 3, "invalid YAML"),
    ("---\n- subject\n---\nbody\n", 2, "must be a mapping"),
    ("---\nsubject: ''\n---\nbody\n", 2, "subject must be a non-empty line"),
    ("---\npreheader: x\nsubject: \"Hi {{ account.name \"\n---\nbody\n", 3, "syntax error"),
])
def test_front_matter_errors_name_the_file_line(root: Path, text: str, line: int, why: str) -> None:
    path = write(root, "default/login_nudge.html.j2", text)
    problem = error(root)
    assert (problem.file, problem.line) == (str(path), line)
    assert why in problem.message


def test_body_syntax_error_line_counts_front_matter_lines(root: Path) -> None:
    text = "---\nsubject: Hi\npreheader: there\n---\n<p>one</p>\n<p>two</p>\n{% for x in %}\n{% endfor %}\n"
    path = write(root, "default/login_nudge.html.j2", text)
    problem = error(root)
    assert problem.file == str(path) and problem.line == 7 and "syntax error" in problem.message
    path.write_text("---\nsubject: Hi\n---\n\n\n<p>{{ account.name | nosuchfilter }}</p>\n")
    problem = error(root)
    assert problem.line == 6 and "nosuchfilter" in problem.message


# ---- strictness ----------------------------------------------------------------------------------

def test_undefined_attribute_names_variable_file_and_line(root: Path) -> None:
    path = write(root, "default/login_nudge.html.j2", email("\n\n<p>{{ account.nonexistent }}</p>"))
    problem = error(root)
    assert (problem.file, problem.line) == (str(path), 7)
    assert "undefined variable 'account.nonexistent'" in problem.message


def test_undefined_top_level_in_subject_layout_and_text(root: Path) -> None:
    path = write(root, "default/login_nudge.html.j2", email("x", subject="Hi {{ customer }}"))
    problem = error(root)
    assert (problem.file, problem.line, problem.message) == (str(path), 2, "undefined variable 'customer'")
    write(root, "default/login_nudge.html.j2", NUDGE)
    branded = BASE.replace("{% block body %}", "{{ brand }}{% block body %}")
    layout = write(root, "_layouts/base.html.j2", branded)
    problem = error(root)
    assert (problem.file, problem.line, problem.message) == (str(layout), 3, "undefined variable 'brand'")
    write(root, "_layouts/base.html.j2", BASE)
    text = write(root, "default/login_nudge.txt.j2", "Hi\n{{ contact.nickname }}\n{{ unsubscribe_url }}\n")
    problem = error(root)
    assert (problem.file, problem.line) == (str(text), 2) and "contact.nickname" in problem.message


def test_or_default_works_for_none_and_printing_none_is_an_error(root: Path) -> None:
    assert "Hi there," in render(root, contact={"first_name": None}).html
    path = write(root, "default/login_nudge.html.j2", email("\n<p>{{ contact.last_name }}</p>"))
    problem = error(root, contact={"last_name": None})
    assert (problem.file, problem.line) == (str(path), 6)
    assert "'contact.last_name' is empty (None)" in problem.message


def test_html_autoescaped_subject_and_text_template_not(root: Path) -> None:
    write(root, "default/login_nudge.txt.j2", "{{ account.name }} {{ unsubscribe_url }}\n")
    out = render(root, account={"name": "<script>alert(1)</script> & Co"})
    assert out.subject == "<script>alert(1)</script> & Co: we miss you"
    assert out.text.startswith("<script>alert(1)</script> & Co ")
    write(root, "default/login_nudge.html.j2", email("<p>{{ account.name }}</p>"))
    out = render(root, account={"name": "<script>alert(1)</script>"})
    assert "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>" in out.html and "<script>" not in out.html


def test_a_subject_from_data_is_one_capped_line(root: Path) -> None:
    rendered = render(root, account={"name": "Harbor\u2028Foods\nBcc: victim@example.com\x85\x0b"})
    assert rendered.subject == "Harbor Foods Bcc: victim@example.com : we miss you"  # no header injected
    long = render(root, account={"name": "A" * 10_000_000})
    assert len(long.subject) == 200 and long.subject.endswith("…") and long.cut == ("subject",)
    assert render(root).cut == ()
    short = Templates(root, SEGMENTS, company=COMPANY, limits=Limits(header_chars=40)).render(
        "login_nudge", "tech_touch", context(account={"name": "Harbor Foods International Holdings plc"}))
    assert len(short.subject) == 40 and short.cut == ("subject",)  # limits.header_chars
    text = "---\npreheader: x\nsubject: '{{ account.name }}'\n---\nx\n"
    path = write(root, "default/login_nudge.html.j2", text)
    problem = error(root, account={"name": "  \u2028 "})
    assert (problem.file, problem.line) == (str(path), 3) and "got nothing" in problem.message


@pytest.mark.parametrize("expr", [
    "''.__class__.__mro__", "account.__class__", "account.items.__self__", "contact.update({'x': 1})",
    "csm.__init__.__globals__",
])
def test_sandbox_blocks_escapes_with_an_error(root: Path, expr: str) -> None:
    path = write(root, "default/login_nudge.html.j2", email("\n<p>{{ " + expr + " }}</p>"))
    problem = error(root)
    assert (problem.file, problem.line) == (str(path), 6)
    assert problem.message.startswith("not allowed in a template: access to attribute")


def test_custom_field_named_like_a_dict_method_is_the_field(root: Path) -> None:
    write(root, "default/login_nudge.html.j2", email("<p>{{ account.items }} / {{ account.values }}</p>"))
    assert "<p>3 / v</p>" in render(root, account={"items": 3, "values": "v"}).html


# ---- text part and required footer ---------------------------------------------------------------

def test_derived_text_keeps_links_drops_images(root: Path) -> None:
    out = render(root)
    assert "https://app.example/login" in out.text and UNSUB in out.text
    assert "logo.png" not in out.text and "<p>" not in out.text
    assert "Hi Jordan," in out.text and "what's new" not in out.text  # the hidden preheader
    assert "\n\n\n" not in out.text and all(line == line.rstrip() for line in out.text.splitlines())
    assert all(len(line) <= 78 or "http" in line for line in out.text.splitlines())


@pytest.mark.parametrize(("layout", "why"), [
    (BASE.replace('<a href="{{ unsubscribe_url }}">Unsubscribe</a>', ""),
     "does not show {{ unsubscribe_url }}"),
    (BASE.replace("{{ company.postal_address }}", "Acme"), "does not show {{ company.postal_address }}"),
])
def test_missing_unsubscribe_or_address_is_an_error(root: Path, layout: str, why: str) -> None:
    write(root, "_layouts/base.html.j2", layout)
    problem = error(root)
    assert problem.file == str(root / "default/login_nudge.html.j2") and why in problem.message


def test_text_part_must_carry_unsubscribe_url(root: Path) -> None:
    path = write(root, "default/login_nudge.txt.j2", "Hi {{ contact.first_name or 'there' }}\n")
    problem = error(root)
    assert problem.file == str(path) and "unsubscribe_url" in problem.message
    path.unlink()
    unsub = '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'
    write(root, "_layouts/base.html.j2", BASE.replace(unsub, f"<!-- {unsub} -->"))
    # a commented-out link is in the HTML source but not in what the customer sees
    problem = error(root)
    assert "text part" in problem.message and "derived" in problem.file


def test_address_with_special_characters_and_line_breaks(root: Path) -> None:
    split = "{{ company.postal_address | replace('\\n', '<br>') }}"
    layout = BASE.replace("{{ company.postal_address }}", split)
    write(root, "_layouts/base.html.j2", layout)
    out = render(root, company={"postal_address": "Smith & Sons\n1 Main St"})
    assert "Smith &amp; Sons&lt;br&gt;1 Main St" in out.html


# ---- filters -------------------------------------------------------------------------------------

def test_filters(root: Path) -> None:
    body = ("{{ account.renewal_date | date }}|{{ account.renewal_date | date('%d %b') }}|"
            "{{ account.arr | money }}|{{ 99.5 | money }}|{{ -1200 | money('€') }}|"
            "{{ account.renewal_date | days_until }}|{{ account.last_login_at | days_until }}|"
            "{{ csm.name | first_name }}|{{ contact.last_name | date or 'n/a' }}|"
            "{{ '' | first_name or 'x' }}")
    write(root, "default/login_nudge.html.j2", email(body))
    renewal = date.today() + timedelta(days=5)
    last = datetime.now(UTC) - timedelta(days=2)
    out = render(root, account={"renewal_date": renewal, "arr": Decimal("12500"), "last_login_at": last},
                 csm={"name": "Dana  Scully"}, contact={"last_name": None})
    expected = (f"{renewal:%B} {renewal.day}, {renewal.year}|{renewal:%d %b}|$12,500|$99.50|-€1,200|"
                "5|-2|Dana|n/a|x")
    assert expected in out.html
    write(root, "default/login_nudge.html.j2", email("\n{{ account.name | money }}"))
    problem = error(root)
    assert problem.line == 6 and "money needs a number" in problem.message


def test_date_filter_formats_march_3() -> None:
    templates = Templates(Path("/nonexistent"), SEGMENTS)
    ctx = {"d": date(2026, 3, 3), "t": datetime(2026, 3, 3, 9, 30)}
    assert templates.render_string("{{ d | date }} {{ t | date }}", ctx) == "March 3, 2026 March 3, 2026"


def test_render_string_is_strict_and_not_escaped() -> None:
    templates = Templates(Path("/nonexistent"), SEGMENTS)
    title = templates.render_string("{{ account.name }} inactive", {"account": {"name": "A&B"}})
    assert title == "A&B inactive"
    with pytest.raises(TemplateError, match=r"undefined variable 'account\.nope'"):
        templates.render_string("{{ account.nope }}", {"account": {}}, where="playbooks/x.yaml")


def test_compiled_templates_are_cached_until_rebuilt(root: Path) -> None:
    templates = Templates(root, SEGMENTS)
    assert templates.render("login_nudge", "tech_touch", context()).subject.endswith("we miss you")
    write(root, "default/login_nudge.html.j2", NUDGE.replace("we miss you", "come back"))
    assert templates.render("login_nudge", "tech_touch", context()).subject.endswith("we miss you")
    assert render(root).subject.endswith("come back")


# ---- validate ------------------------------------------------------------------------------------

def test_validate_clean_tree_has_no_problems(root: Path) -> None:
    write(root, "tech_touch/login_nudge.html.j2", email("<p>{{ account.seats_purchased or 'no' }} seats</p>"))
    write(root, "default/login_nudge.txt.j2", "Hi\n{{ unsubscribe_url }}\n")
    write(root, "_partials/footer.html.j2", "<p>{{ company.name }}</p>")
    write(root, "README.md", "how to write templates")
    write(root, "notes.txt", "ideas for next quarter")
    templates = Templates(root, SEGMENTS, company=COMPANY, fields={"industry": "string", **SEATS})
    assert templates.validate({"login_nudge": [Where("playbooks/a.yaml", 9, 7)]}) == []


def test_validate_reports_every_problem_at_once(root: Path) -> None:
    syntax = write(root, "default/broken.html.j2", "---\nsubject: Hi\n---\n\n{% for x in %}\n")
    nosubj = write(root, "default/nosubject.html.j2", "---\npreheader: x\n---\nbody\n")
    undef = write(root, "low_touch/login_nudge.html.j2", email("\n{{ acount.name }}"))
    nofooter = write(root, "high_touch/plain.html.j2", "---\nsubject: Hi\n---\n<p>no footer</p>\n")
    write(root, "tech_tuch/login_nudge.html.j2", email("x"))
    badname = write(root, "default/welcome.html", "<p>x</p>")
    orphan = write(root, "default/ghost.txt.j2", "{{ unsubscribe_url }}")
    loose = write(root, "stray.html.j2", email("x"))
    layout = write(root, "_layouts/other.html.j2", "<p>\n{% endblock %}\n")
    problems = Templates(root, SEGMENTS, company=COMPANY).validate()
    got = {(p.file, p.line): p.message for p in problems}
    assert "syntax error" in got[(str(syntax), 5)]
    assert got[(str(nosubj), 1)] == "front matter has no subject"
    assert got[(str(undef), 6)] == "undefined variable 'acount'"
    assert "does not show {{ unsubscribe_url }}" in got[(str(nofooter), None)]
    folder = got[(str(root / "tech_tuch"), None)]
    assert folder == "unknown segment folder 'tech_tuch'; did you mean 'tech_touch'?"
    assert "not a usable template" in got[(str(badname), None)]
    assert "not a usable template" in got[(str(loose), None)]
    assert "text part without an email" in got[(str(orphan), None)]
    assert "syntax error" in got[(str(layout), 2)]
    assert len(problems) == 9 and problems == sorted(problems)


def test_validate_required_names_missing_for_some_segments(root: Path) -> None:
    write(root, "tech_touch/only_tech.html.j2", email("x"))
    for segment in SEGMENTS:
        write(root, f"{segment}/everywhere.html.j2", email("y"))
    required = {
        "only_tech": [Where("playbooks/a.yaml", 12, 9), Where("playbooks/b.yaml", 4, 5)],
        "everywhere": [Where("playbooks/a.yaml", 20, 9)],
        "login_nudge": [Where("playbooks/a.yaml", 30, 9)],
        "login_nudg": [Where("playbooks/c.yaml", 3, 17)],
    }
    problems = Templates(root, SEGMENTS, company=COMPANY).validate(required)
    why = ("template 'only_tech' not found: no default/only_tech.html.j2 and no version for "
           "segment(s) high_touch, low_touch")
    assert Problem("playbooks/a.yaml", 12, 9, why) in problems
    assert Problem("playbooks/b.yaml", 4, 5, why) in problems
    [typo] = [p for p in problems if p.file == "playbooks/c.yaml"]
    assert (typo.line, typo.col) == (3, 17) and typo.message.endswith("did you mean 'login_nudge'?")
    assert len(problems) == 3


def test_sample_context_is_complete_and_realistic() -> None:
    fields = {"industry": "string", "mrr": "decimal"}
    ctx = Templates.sample_context(COMPANY, segment="low_touch", fields=fields)
    assert set(ctx) == {"account", "contact", "segment", "playbook", "csm", "company", "unsubscribe_url", "event"}
    assert ctx["event"]["name"] == "sample_event" and ctx["event"]["any_key"] == 5
    assert "seats_purchased" not in ctx["account"], "a custom field the project does not have"
    assert ctx["company"]["postal_address"] == "1 Main St, Springfield"
    assert ctx["unsubscribe_url"].startswith("http://127.0.0.1:8025/unsubscribe/")
    assert isinstance(ctx["account"]["renewal_date"], date) and ctx["account"]["segment"] == "low_touch"
    assert ctx["account"]["mrr"] == 62.5 and ctx["account"]["industry"] == "sample industry"
    assert all(value is not None for value in ctx["contact"].values())


def test_validate_renders_as_for_an_account_without_its_optional_fields(root: Path) -> None:
    path = write(root, "default/score.html.j2", email("<p>{% if account.nps >= 9 %}Thanks!{% endif %}</p>"))
    guarded = ("<p>{% if (account.nps or 0) >= 9 %}Thanks!{% endif %}"
               "{{ account.plan or 'your plan' }} {{ contact.first_name or 'there' }}</p>")
    write(root, "default/guarded.html.j2", email(guarded))
    problems = Templates(root, SEGMENTS, company=COMPANY).validate()
    assert [(p.file, p.line) for p in problems] == [(str(path), 5)]
    assert problems[0].message.startswith("for an account or contact without its optional fields: ")
    assert "'>=' not supported" in problems[0].message
