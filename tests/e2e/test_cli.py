"""End to end: the `playbookd` command on a project made by `playbookd init`, as CS ops would use it."""

from __future__ import annotations

import email
import sqlite3
from email import policy
from pathlib import Path

import pytest
from cli_helpers import edit_config, json_lines, playbookd
from smtp_server import SmtpServer, free_port

SIMULATE_KEYS = ["playbook", "account", "segment", "step", "action", "template", "to"]


@pytest.fixture(scope="module")
def skeleton(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("skeleton")
    result = playbookd("init", "project", "--accounts", "120", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "project"


@pytest.fixture
def project(skeleton: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "project"
    shutil.copytree(skeleton, target)
    return target


def db_count(project: Path, query: str) -> int:
    with sqlite3.connect(project / "playbookd.db") as conn:
        return int(conn.execute(query).fetchone()[0])


def test_init_refuses_a_folder_that_is_not_empty(project: Path) -> None:
    result = playbookd("init", ".", cwd=project)
    assert result.returncode == 1
    assert "not empty" in result.stderr and "Traceback" not in result.stderr


def test_validate_accepts_the_sample_project(project: Path) -> None:
    result = playbookd("validate", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "12 playbook(s)" in result.stdout
    assert not (project / "playbookd.db").exists()  # validating creates no database


def test_validate_reports_every_problem_with_its_place(project: Path) -> None:
    bad = project / "playbooks" / "no-login-7d.yaml"
    bad.write_text(bad.read_text().replace("last_login_at: {older_than: 7d}", "last_lgoin_at: {older_than: 7d}")
                   .replace("template: login_nudge,", "template: no_such_template,"))
    result = playbookd("validate", cwd=project)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "no-login-7d.yaml:" in line]
    assert any("last_lgoin_at" in line and "last_login_at" in line for line in lines), result.stderr
    assert any("no_such_template" in line for line in lines), result.stderr
    assert all(line.split("no-login-7d.yaml:")[1].split(":")[0].isdigit() for line in lines)
    assert "Traceback" not in result.stderr


def test_unknown_config_key_is_refused_with_path_and_hint(project: Path) -> None:
    edit_config(project, delivery={"form": "x@y.example"})
    result = playbookd("validate", cwd=project)
    assert result.returncode == 1
    assert "delivery.form" in result.stderr and "from" in result.stderr


def test_usage_error_exits_2(project: Path) -> None:
    assert playbookd("simulate", "--format", "xml", cwd=project).returncode == 2


def test_unreachable_database_exits_3(project: Path) -> None:
    edit_config(project, database=f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    result = playbookd("status", cwd=project)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr


def test_sync_applies_good_rows_and_reports_bad_ones(project: Path) -> None:
    csv = project / "data" / "accounts.csv"
    lines = csv.read_text().splitlines()
    header = lines[0].split(",")
    broken = lines[3].split(",")
    broken[header.index("renewal_date")] = "next spring"
    lines[3] = ",".join(broken)
    csv.write_text("\n".join(lines) + "\n")
    result = playbookd("sync", cwd=project)
    assert result.returncode == 1
    assert "accounts.csv:4" in result.stdout + result.stderr
    assert "renewal_date" in result.stdout + result.stderr
    assert db_count(project, "select count(*) from accounts") == len(lines) - 2


def test_simulate_json_is_sorted_and_changes_nothing(project: Path) -> None:
    assert playbookd("sync", cwd=project).returncode == 0
    result = playbookd("simulate", "--format", "json", cwd=project)
    assert result.returncode == 0, result.stderr
    entries = json_lines(result.stdout)
    assert entries, "the sample data should put some accounts into playbooks"
    assert all(list(e) == SIMULATE_KEYS for e in entries)
    assert [(e["playbook"], e["account"]) for e in entries] == sorted((e["playbook"], e["account"]) for e in entries)
    assert all(e["step"] == 0 and e["to"] == sorted(e["to"]) for e in entries)
    for e in entries:
        assert e["template"].endswith(".html.j2") and e["template"].split("/")[0] in {e["segment"], "default"}
    assert db_count(project, "select count(*) from enrollments") == 0
    assert db_count(project, "select count(*) from outbox") == 0


def test_run_once_delivers_what_simulate_predicted_and_never_twice(project: Path) -> None:
    edit_config(project, delivery={"quiet_hours": None, "frequency_cap": None})
    assert playbookd("sync", cwd=project).returncode == 0
    predicted = json_lines(playbookd("simulate", "--format", "json", cwd=project).stdout)
    first = playbookd("run", "--once", cwd=project)
    assert first.returncode == 0, first.stderr
    expected = sorted(addr for e in predicted if e["action"] == "email" for addr in e["to"])
    files = sorted((project / "outbox").glob("*.eml"))
    received = sorted(email.message_from_bytes(f.read_bytes(), policy=policy.default)["To"] for f in files)
    assert received == expected
    second = playbookd("run", "--once", cwd=project)
    assert second.returncode == 0, second.stderr
    assert "sent 0" in second.stdout
    assert len(list((project / "outbox").glob("*.eml"))) == len(files)
    assert db_count(project, "select count(*) from outbox where state = 'sent'") == len(files)


def test_explain_preview_history_status_after_a_run(project: Path) -> None:
    edit_config(project, delivery={"quiet_hours": None})
    assert playbookd("run", "--once", cwd=project).returncode == 0
    with sqlite3.connect(project / "playbookd.db") as conn:
        account, playbook, template = conn.execute(
            "select account_id, playbook_id, template from outbox limit 1").fetchone()
    explained = playbookd("explain", account, "--playbook", playbook, cwd=project)
    assert explained.returncode == 0, explained.stderr
    assert "already enrolled" in explained.stdout and "✓" in explained.stdout
    name = Path(template).name.removesuffix(".html.j2")
    preview = playbookd("preview", name, "--account", account, cwd=project)
    assert preview.returncode == 0, preview.stderr
    assert f"Template: {template}" in preview.stdout
    history = playbookd("history", "--account", account, cwd=project)
    assert "entered" in history.stdout and "sent" in history.stdout
    status = playbookd("status", "--format", "json", cwd=project)
    assert status.returncode == 0 and '"sent"' in status.stdout


def test_explain_unknown_account_is_a_user_error(project: Path) -> None:
    assert playbookd("sync", cwd=project).returncode == 0
    result = playbookd("explain", "ACC-NOPE", cwd=project)
    assert result.returncode == 1 and "ACC-NOPE" in result.stderr


def test_suppressed_contact_gets_nothing(project: Path) -> None:
    edit_config(project, delivery={"quiet_hours": None, "frequency_cap": None})
    assert playbookd("sync", cwd=project).returncode == 0
    predicted = json_lines(playbookd("simulate", "--format", "json", cwd=project).stdout)
    victim = next(addr for e in predicted for addr in e["to"])
    assert playbookd("suppress", "add", victim, "--note", "asked by phone", cwd=project).returncode == 0
    assert playbookd("run", "--once", cwd=project).returncode == 0
    sent_to = [email.message_from_bytes(f.read_bytes(), policy=policy.default)["To"]
               for f in (project / "outbox").glob("*.eml")]
    assert sent_to and victim not in sent_to
    assert victim in playbookd("suppress", "list", cwd=project).stdout


def test_run_once_over_smtp(project: Path, smtp_server: SmtpServer) -> None:
    edit_config(project, delivery={"transport": "smtp", "quiet_hours": None, "frequency_cap": None,
                                   "rate_per_second": 1000, "smtp": {"host": "127.0.0.1", "port": smtp_server.port}})
    result = playbookd("run", "--once", cwd=project)
    assert result.returncode == 0, result.stderr
    sent = db_count(project, "select count(*) from outbox where state = 'sent'")
    assert sent > 0 and len(smtp_server.received) == sent
    ids = {r.message["Message-ID"] for r in smtp_server.received}
    assert len(ids) == sent
    assert all(r.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for r in smtp_server.received)
    assert playbookd("run", "--once", cwd=project).returncode == 0
    assert len(smtp_server.received) == sent


def test_send_test_reaches_the_smtp_server(project: Path, smtp_server: SmtpServer) -> None:
    edit_config(project, delivery={"transport": "smtp", "smtp": {"host": "127.0.0.1", "port": smtp_server.port}})
    result = playbookd("send-test", "--to", "me@acme.example", cwd=project)
    assert result.returncode == 0, result.stderr
    assert [r.recipients for r in smtp_server.received] == [["me@acme.example"]]


def test_send_test_without_a_server_exits_3(project: Path) -> None:
    edit_config(project, delivery={"transport": "smtp", "smtp": {"host": "127.0.0.1", "port": free_port()}})
    result = playbookd("send-test", "--to", "me@acme.example", cwd=project)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_an_nps_response_event_starts_the_detractor_follow_up(project: Path) -> None:
    assert playbookd("sync", cwd=project).returncode == 0
    account = db_value(project, "SELECT a.id FROM accounts a JOIN contacts c ON c.account_id = a.id "
                                     "WHERE json_extract(a.data, '$.status') = 'active' AND c.is_primary "
                                     "ORDER BY a.id LIMIT 1")
    event = ("event", account, "nps_response", "--data", '{"score": 3}', "--id", "survey-1")
    assert playbookd(*event, cwd=project).stdout.startswith("recorded event nps_response")
    assert "already recorded" in playbookd(*event, cwd=project).stdout
    unknown = playbookd("event", "ACC-404", "nps_response", "--data", '{"score": 3}', cwd=project)
    assert unknown.returncode == 1 and "unknown account 'ACC-404'" in unknown.stderr
    bad = playbookd("event", account, "nps_response", "--data", "{score: 3}", cwd=project)
    assert bad.returncode == 1 and "--data is not valid JSON" in bad.stderr
    assert playbookd("run", "--once", cwd=project).returncode == 0
    query = f"SELECT count(*) FROM outbox WHERE playbook_id = 'nps-response-detractor' AND account_id = '{account}'"
    assert db_count(project, query) == 1
    assert "about their NPS response of 3" in playbookd("tasks", cwd=project).stdout


def db_value(project: Path, query: str) -> str:
    with sqlite3.connect(project / "playbookd.db") as conn:
        return str(conn.execute(query).fetchone()[0])
