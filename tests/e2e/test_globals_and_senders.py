"""template_globals and `from:` end to end: validate, full cycles on SQLite and PostgreSQL, a real
SMTP server receiving the mail, and a reload that reads a globals file again."""

from __future__ import annotations

from datetime import UTC, datetime
from email.headerregistry import Address
from pathlib import Path
from typing import Any

import yaml
from cli_helpers import ROOT, edit_config, playbookd
from smtp_server import SmtpServer

from playbookd import runtime
from playbookd.config.settings import load_config
from playbookd.service.daemon import Daemon
from playbookd.store.schema import audit

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ACCOUNTS = ("id,name,annual_revenue,status,plan,csm_email,csm_name\n"
            "ACC-1,Harbor Foods,5000,active,basic,maria@acme.example,\"María José\r\nBcc: all@evil.example\"\n"
            "ACC-2,Pine Labs,5000,active,basic,dana@partner.example,Dana Scully\n"
            "ACC-3,Crowd Co,5000,active,basic,,\n"
            "ACC-4,Odd Ltd,5000,active,basic,not an address,Nobody\n")
CONTACTS = ("account_id,email,first_name,role,status\n"
            "ACC-1,ana@harbor.example,Ana,admin,active\nACC-2,pia@pine.example,Pia,admin,active\n"
            "ACC-3,cy@crowd.example,Cy,admin,active\nACC-4,oz@odd.example,Oz,admin,active\n")
NOTE = """---
subject: "Join us on {{ globals.webinar_date | date }}"
from: csm
---
{% extends "_layouts/base.html.j2" %}
{% block body %}<p>{{ globals.webinar_title }}: {{ globals.links.signup }}</p>{% endblock %}
"""
PLAYBOOK = "trigger: {when: {status: active}}\nsteps:\n  - email: {template: note, to: admin}\n"
GLOBALS = {"webinar_date": "2026-04-09", "webinar_title": "Dashboards", "links": {"signup": "https://x.example/s"}}
SHIPPED = yaml.safe_load((ROOT / "config.yaml").read_text())["template_globals"]  # the sample templates use them


def build(make: Any, db_url: str, playbooks: dict[str, str], template: str = NOTE, **config: Any) -> Any:
    project = make({}, accounts_csv=ACCOUNTS, contacts_csv=CONTACTS, database=db_url, **config)
    (project.path / "email_templates" / "default" / "note.html.j2").write_text(template)
    for name, text in playbooks.items():
        (project.path / "playbooks" / f"{name}.yaml").write_text(text)
    project.config = load_config(project.path / "config.yaml")
    project.runtime = runtime.load(engine=project.engine, config=project.config)
    return project


def smtp(server: SmtpServer) -> dict[str, Any]:
    return {"transport": "smtp", "smtp": {"host": "127.0.0.1", "port": server.port}}


def received(server: SmtpServer) -> dict[str, Any]:
    return {r.recipients[0]: r for r in server.received}


def test_from_csm_is_the_csm_only_at_a_domain_we_send_for(make: Any, db_url: str, smtp_server: SmtpServer) -> None:
    project = build(make, db_url, {"note": PLAYBOOK}, template_globals=GLOBALS, delivery=smtp(smtp_server))
    project.run(T0)
    mail = received(smtp_server)
    assert sorted(mail) == ["ana@harbor.example", "cy@crowd.example", "oz@odd.example", "pia@pine.example"]
    ana = mail["ana@harbor.example"].message
    csm: Address = ana["From"].addresses[0]
    # the name from data is one line: no header was smuggled in through it
    assert (csm.addr_spec, csm.display_name) == ("maria@acme.example", "María José Bcc: all@evil.example")
    assert ana["Reply-To"] is None and ana["Bcc"] is None and mail["ana@harbor.example"].sender == "maria@acme.example"
    pia = mail["pia@pine.example"].message  # partner.example is not ours: DMARC would fail, so Reply-To
    assert pia["From"].addresses[0].addr_spec == "success@acme.example"
    assert str(pia["Reply-To"]) == "Dana Scully <dana@partner.example>"
    for fallback in ("cy@crowd.example", "oz@odd.example"):  # no CSM, or not an address: the configured sender
        message = mail[fallback].message
        assert message["From"].addresses[0].addr_spec == "success@acme.example" and message["Reply-To"] is None
    queued = {r.contact: r.detail.get("sender") for r in project.rows(audit, audit.c.event == "queued")}
    assert queued == {"ana@harbor.example": "csm", "pia@pine.example": "csm_reply_to",
                      "cy@crowd.example": "csm_missing", "oz@odd.example": "csm_missing"}
    preview = playbookd("preview", "note", "--account", "ACC-2", cwd=project.path)
    assert preview.returncode == 0, preview.stderr
    assert "From: Acme Success <success@acme.example>\nReply-To: Dana Scully <dana@partner.example>\n" \
        in preview.stdout


def test_sender_domains_and_a_step_from_override_the_template(make: Any, db_url: str,
                                                               smtp_server: SmtpServer) -> None:
    step = PLAYBOOK.replace("to: admin}", 'to: admin, from: "Events <events@partner.example>"}')
    project = build(make, db_url, {"note": step}, template_globals=GLOBALS,
                    delivery={**smtp(smtp_server), "sender_domains": ["acme.example", "partner.example"]})
    project.run(T0)
    for message in (r.message for r in smtp_server.received):
        assert str(message["From"]) == "Events <events@partner.example>" and message["Reply-To"] is None


def test_a_globals_file_is_read_at_load_and_again_on_reload(make: Any, db_url: str) -> None:
    project = make({}, accounts_csv=ACCOUNTS, contacts_csv=CONTACTS, database=db_url)
    (project.path / "globals.yaml").write_text(yaml.safe_dump({**SHIPPED, **GLOBALS}))
    edit_config(project.path, template_globals="globals.yaml")
    project = _rebuild(project)
    project.run(T0)
    body = next((project.path / "outbox").glob("*.eml")).read_text()
    assert "Subject: Join us on April 9, 2026" in body and "Dashboards: https://x.example/s" in body
    daemon = Daemon(project.path / "config.yaml", project.runtime, project.engine)
    (project.path / "globals.yaml").write_text(yaml.safe_dump({**SHIPPED, **GLOBALS, "webinar_date": "2026-05-07"}))
    daemon.reload()
    assert daemon.runtime.templates.globals["webinar_date"] == "2026-05-07"
    (project.path / "globals.yaml").write_text("webinar_date: [unclosed\n")
    daemon.reload()  # a file that does not load keeps the running set
    assert daemon.runtime.templates.globals["webinar_date"] == "2026-05-07"


def _rebuild(project: Any) -> Any:
    (project.path / "email_templates" / "default" / "note.html.j2").write_text(NOTE)
    (project.path / "playbooks" / "note.yaml").write_text(PLAYBOOK)
    project.config = load_config(project.path / "config.yaml")
    project.runtime = runtime.load(engine=project.engine, config=project.config)
    return project


def test_validate_names_the_template_line_of_an_undefined_global(make: Any, tmp_path: Path) -> None:
    project = make({}, accounts_csv=ACCOUNTS, contacts_csv=CONTACTS, template_globals=GLOBALS)
    (project.path / "email_templates" / "default" / "note.html.j2").write_text(
        NOTE.replace("globals.links.signup", "globals.links.signin"))
    (project.path / "playbooks" / "note.yaml").write_text(PLAYBOOK)
    result = playbookd("validate", cwd=project.path)
    assert result.returncode == 1
    assert "note.html.j2:6: undefined variable 'globals.links.signin'" in result.stderr, result.stderr
    edit_config(project.path, template_globals={"9lives": 1, **GLOBALS})
    result = playbookd("validate", cwd=project.path)
    assert result.returncode == 1 and "config.yaml:" in result.stderr and "'9lives'" in result.stderr, result.stderr
    edit_config(project.path, template_globals="nowhere.yaml")
    result = playbookd("validate", cwd=project.path)
    assert result.returncode == 1 and "template_globals in" in result.stderr and "nowhere.yaml" in result.stderr


def test_a_bad_from_is_located_in_the_template_and_the_playbook(make: Any) -> None:
    project = make({}, accounts_csv=ACCOUNTS, contacts_csv=CONTACTS, template_globals=GLOBALS)
    (project.path / "email_templates" / "default" / "note.html.j2").write_text(NOTE.replace("from: csm", "from: CSM"))
    (project.path / "playbooks" / "note.yaml").write_text(PLAYBOOK.replace("to: admin}", "to: admin, from: x@}"))
    result = playbookd("validate", cwd=project.path)
    assert result.returncode == 1
    assert "note.html.j2:3: 'from' is csm or an email address, got 'CSM'" in result.stderr, result.stderr
    assert "note.yaml:3:" in result.stderr and "got 'x@'" in result.stderr, result.stderr
