"""Every render runs under limits.render_seconds and limits.render_memory_mb: a template that runs
away fails that one email, named with its template, account and limit, and the next one renders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from playbookd.config.settings import Company, Limits
from playbookd.templates.render import TemplateError, Templates

COMPANY = Company(name="Acme", postal_address="1 Main St, Springfield", public_url="http://127.0.0.1:8025")
LAYOUT = ("<html><body>{% block body %}{% endblock %}<p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a> "
          "{{ company.postal_address }}</p></body></html>\n")


def email(body: str) -> str:
    return ('---\nsubject: "Hello"\n---\n{% extends "_layouts/base.html.j2" %}\n'
            f"{{% block body %}}{body}{{% endblock %}}\n")


def folder(tmp_path: Path, body: str) -> Path:
    root = tmp_path / "email_templates"
    (root / "_layouts").mkdir(parents=True)
    (root / "default").mkdir()
    (root / "_layouts" / "base.html.j2").write_text(LAYOUT)
    (root / "default" / "note.html.j2").write_text(email(body))
    return root


def context(**account: Any) -> dict[str, Any]:
    ctx = Templates.sample_context(COMPANY, fields={"loops": "integer"})
    ctx["account"] = {**ctx["account"], **account}
    return ctx


NESTED = "{% for i in range(account.loops) %}{% for j in range(account.loops) %}{% endfor %}{% endfor %}done"


def test_a_loop_driven_by_a_synced_number_fails_that_email_at_the_time_limit(tmp_path: Path) -> None:
    templates = Templates(folder(tmp_path, NESTED), [], company=COMPANY, limits=Limits(render_seconds=3))
    with pytest.raises(TemplateError) as caught:
        templates.render("note", "default", context(id="ACC-7", loops=100_000))
    problem = caught.value.problem
    assert problem.file.endswith("default/note.html.j2")
    assert "for account ACC-7" in problem.message and "limits.render_seconds (3 s)" in problem.message
    assert "done" in templates.render("note", "default", context(id="ACC-8", loops=3)).html


def test_a_render_past_its_memory_fails_that_email_and_the_next_renders(tmp_path: Path) -> None:
    body = "{{ 'x'|center(account.loops) }}"
    templates = Templates(folder(tmp_path, body), [], company=COMPANY, limits=Limits(render_memory_mb=64))
    with pytest.raises(TemplateError) as caught:
        templates.render("note", "default", context(id="ACC-9", loops=10**9))
    assert "for account ACC-9" in str(caught.value) and "limits.render_memory_mb (64 MB)" in str(caught.value)
    assert "x" in templates.render("note", "default", context(id="ACC-10", loops=5)).html


def test_text_repeated_a_billion_times_is_refused_before_it_is_built(tmp_path: Path) -> None:
    templates = Templates(folder(tmp_path, "{{ 'a' * 10**9 }}"), [], company=COMPANY)
    (problem,) = templates.validate()
    assert problem.file.endswith("default/note.html.j2") and problem.line == 5
    assert "would take more than limits.render_memory_mb (256 MB)" in problem.message


VALIDATE = """
import json, resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "playbookd", "validate"], cwd=sys.argv[1], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
print(json.dumps({"code": done.returncode, "stderr": done.stderr, "peak_mb": peak}))
"""


def test_validate_does_not_take_a_gigabyte_for_it(tmp_path: Path) -> None:
    init = subprocess.run([sys.executable, "-m", "playbookd", "init", "project", "--accounts", "5"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    project = tmp_path / "project"
    (project / "email_templates" / "default" / "huge.html.j2").write_text(email("{{ 'a' * 10**9 }}"))
    (project / "email_templates" / "_layouts" / "base.html.j2").write_text(LAYOUT)
    # a wrapper process whose only descendants are validate and its render worker: their peak memory
    wrapper = subprocess.run([sys.executable, "-c", VALIDATE, str(project)], capture_output=True, text=True,
                             timeout=300)
    result = json.loads(wrapper.stdout)
    assert result["code"] == 1 and "huge.html.j2:5: not allowed in a template" in result["stderr"], result
    assert result["peak_mb"] < 400, f"validate peaked at {result['peak_mb']} MB"
