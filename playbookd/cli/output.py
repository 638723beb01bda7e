"""How results are printed: tables for people, JSON lines for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import click
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from playbookd.config.settings import describe_settings
from playbookd.delivery import circuit
from playbookd.delivery.forget import HASHED
from playbookd.delivery.outbox import POLICY_REFUSAL
from playbookd.delivery.outbox import counts as outbox_counts
from playbookd.delivery.senders import last_failure
from playbookd.engine import explain, simulate
from playbookd.errors import DependencyError, UserError
from playbookd.report import snapshots
from playbookd.runtime import Runtime
from playbookd.service import cycle
from playbookd.service.cycle import CycleReport
from playbookd.store import audit, state
from playbookd.store.database import aware
from playbookd.store.retention import DROPPED_NOTE, body_dropped
from playbookd.store.schema import accounts, contacts, enrollments, outbox, suppressions, tasks
from playbookd.store.schema import audit as audit_table
from playbookd.sync import health
from playbookd.sync.run import SyncReport


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    data = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in data)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in data:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def echo_sync(report: SyncReport) -> None:
    for line in report.summary_lines():
        click.echo(line)
    _raise_for(report)


def _raise_for(report: SyncReport) -> None:
    if report.unreachable:
        raise DependencyError(f"cannot read source(s) {', '.join(report.unreachable)} now (down, or changing "
                              "while read): nothing from them was applied; the others synced")
    if report.unreadable:
        raise UserError(f"cannot read source(s) {', '.join(report.unreadable)} (see above): nothing from them "
                        "was applied; the others synced")
    if not report.ok:
        raise UserError("sync finished with rejected rows (the good rows were applied)")


def echo_simulation(rt: Runtime, engine: Engine, at: datetime, fmt: str, only: Sequence[str] = ()) -> None:
    entries = simulate.simulate(rt, engine, at, only)
    if fmt == "json":
        for entry in entries:
            click.echo(simulate.as_json(entry))
        return
    rows = [simulate.as_row(e) for e in entries]
    table(("PLAYBOOK", "ACCOUNT", "SEGMENT", "ACTION", "WHAT", "TO"), rows)
    click.echo(f"\n{len(rows)} account(s) would enter a playbook at {at.isoformat()}")


def echo_explain(rt: Runtime, engine: Engine, account: str, playbook: str | None, at: datetime,
                 fmt: str) -> None:
    result = explain.explain(rt, engine, account, at, playbook)
    if fmt == "json":
        result.pop("_health")
        for p in result["playbooks"]:
            p.pop("_tree")
        click.echo(json.dumps(result, indent=2, default=str))
        return
    for line in explain.render_text(result):
        click.echo(line)


def echo_cycle(report: CycleReport) -> None:
    if report.sync is not None:
        for line in report.sync.summary_lines():
            click.echo(line)
    click.echo(f"enrolled {report.enrolled}, advanced {report.advanced} enrollment(s)")
    click.echo(f"delivery: {report.delivery.line()}")
    hooks = report.webhooks
    if hooks.sent or hooks.retried or hooks.failed or hooks.skipped:
        click.echo(f"webhooks: posted {hooks.sent}, retrying {hooks.retried}, failed {hooks.failed}, "
                   f"skipped {hooks.skipped}")
    if report.purged.bodies or report.purged.audit:
        click.echo(report.purged.line())
    if report.reports is not None:
        click.echo(report.reports.line())
    click.echo(report.took())
    if report.failed_accounts:
        click.echo(f"evaluation: the rules engine could not evaluate {report.failed_accounts} account(s)")
    if report.failed_steps:
        click.echo(f"cadences: {report.failed_steps} enrollment(s) failed at a step")
    if report.errors:
        raise UserError("the cycle ran, but " + "; ".join(report.errors))
    if report.sync is not None and (report.sync.unreachable or report.sync.unreadable):
        _raise_for(report.sync)
    if not report.ok:
        raise UserError("the cycle ran, but sync rejected some rows (see above)")


def refresh(rt: Runtime, engine: Engine, playbook: str | None) -> None:
    """`report --refresh`: the console's figures of one playbook or of all, computed now."""
    if playbook is not None and rt.playbook(playbook) is None:
        raise UserError(f"--playbook: no playbook {playbook!r}")
    report = cycle.refresh_reports(rt, engine, None if playbook is None else [playbook])
    for playbook, seconds in sorted(report.refreshed.items()):
        click.echo(f"{playbook}: {seconds:.2f} s")
    click.echo(report.line())
    if report.failed:
        raise UserError("; ".join(f"the report figures of {p} could not be refreshed: {why}"
                                  for p, why in sorted(report.failed.items())))


def _count(engine: Engine, column: Any) -> dict[str, int]:
    with engine.connect() as conn:
        return {str(k): n for k, n in conn.execute(select(column, func.count()).group_by(column))}


def _scalar(engine: Engine, query: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def status_data(engine: Engine, sources: Sequence[str] | None = None) -> dict[str, Any]:
    with engine.connect() as conn:
        unknown = [dict(r._mapping) for r in conn.execute(
            select(outbox.c.id, outbox.c.to_addr, outbox.c.playbook_id, outbox.c.account_id, outbox.c.last_error)
            .where(outbox.c.state == "unknown").order_by(outbox.c.id).limit(50))]
        by_state = outbox_counts(conn)
        paused = circuit.current(conn)
    return {
        "accounts": _scalar(engine, select(func.count()).select_from(accounts)),
        "segments": _count(engine, accounts.c.segment),
        "contacts": _scalar(engine, select(func.count()).select_from(contacts)),
        "enrollments": _count(engine, enrollments.c.state),
        "outbox": by_state, "unknown_messages": unknown,
        "open_tasks": _scalar(engine, select(func.count()).select_from(tasks).where(tasks.c.state == "open")),
        "suppressed": _scalar(engine, select(func.count()).select_from(suppressions)),
        "last_cycle": state.get(engine, "last_cycle"), "last_evaluation": state.get(engine, "last_evaluation"),
        "evaluation_failures": _evaluation_failures(engine),
        "failed_enrollments": _failed_enrollments(engine),
        "policy_refusals": _policy_refusals(engine),
        "smtp_circuit": paused,
        "header_cuts": _header_cuts(engine),
        "sources": health.states(engine, sources),
        "report_failures": snapshots.failures(engine),
        "sender_failure": last_failure(engine),
    }


def _header_cuts(engine: Engine) -> dict[str, Any] | None:
    """Emails whose subject (or another header from data) was cut at limits.header_chars."""
    cut = audit_table.c.event == audit.HEADER_CUT
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(audit_table).where(cut)).scalar_one()
        last = conn.execute(select(audit_table.c.at, audit_table.c.account_id, audit_table.c.detail).where(cut)
                            .order_by(audit_table.c.id.desc()).limit(1)).first()
    if not count or last is None:
        return None
    return {"count": count, "last_at": aware(last.at), "last_account": last.account_id,
            "last_headers": (last.detail or {}).get("headers")}


def _policy_refusals(engine: Engine) -> dict[str, Any] | None:
    """Messages the mail server refused for its policy or our setup (5.7.x): every message may hit it."""
    refused = (audit_table.c.event == audit.FAILED) & (audit_table.c.reason == POLICY_REFUSAL)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(audit_table).where(refused)).scalar_one()
        last = conn.execute(select(audit_table.c.at, audit_table.c.detail).where(refused)
                            .order_by(audit_table.c.id.desc()).limit(1)).first()
    if not count or last is None:
        return None
    return {"count": count, "last_at": aware(last.at), "last_error": (last.detail or {}).get("error")}


def _failed_enrollments(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(enrollments.c.id, enrollments.c.playbook_id, enrollments.c.account_id,
                                   enrollments.c.step, enrollments.c.reason)
                            .where(enrollments.c.state == "failed").order_by(enrollments.c.id).limit(limit))
        return [{"id": r.id, "playbook": r.playbook_id, "account": r.account_id, "step": r.step + 1,
                 "error": r.reason} for r in rows]


def _evaluation_failures(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    """The accounts the rules engine could not evaluate in the latest evaluation that failed on any."""
    failed = audit_table.c.event == audit.EVALUATION_FAILED
    with engine.connect() as conn:
        latest = select(func.max(audit_table.c.at)).where(failed).scalar_subquery()
        rows = conn.execute(select(audit_table.c.at, audit_table.c.account_id, audit_table.c.detail)
                            .where(failed, audit_table.c.at == latest).order_by(audit_table.c.id).limit(limit))
        return [{"at": aware(r.at), "account": r.account_id, "error": (r.detail or {}).get("error")} for r in rows]


def echo_status(engine: Engine, fmt: str, playbooks: list[dict[str, Any]] | None = None,
                sources: Sequence[str] | None = None) -> None:
    """`status`; each playbook's status is printed after it (cli.launch) or is in its JSON."""
    data = status_data(engine, sources)
    if playbooks is not None:
        data["playbooks"] = playbooks
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(f"accounts: {data['accounts']}  " + " ".join(f"{k}={v}" for k, v in sorted(data["segments"].items())))
    click.echo(f"contacts: {data['contacts']}  suppressed: {data['suppressed']}  open tasks: {data['open_tasks']}")
    click.echo("enrollments: " + (" ".join(f"{k}={v}" for k, v in sorted(data["enrollments"].items())) or "none"))
    click.echo("emails: " + (" ".join(f"{k}={v}" for k, v in sorted(data["outbox"].items())) or "none"))
    last = data["last_cycle"] or {}
    click.echo(f"last cycle: {last.get('at', 'never')}")
    if data["smtp_circuit"]:
        paused = data["smtp_circuit"]
        click.echo(f"\nDelivery is paused until {paused['until']}: the mail server refused messages in a row for its "
                   f"policy or our setup (5.7.x) since {paused['since']}; queued mail waits, and is tried again then. "
                   f"Last reply: {paused['last_reply']}")
    if data["sender_failure"]:
        failed = data["sender_failure"]
        click.echo(f"\nThe last delivery run, at {failed['at']}, had a sending process (delivery.processes) fail; "
                   f"it is started again on the next run, and what it had in flight is `unknown`: {failed['error']}")
    _echo_sources(data["sources"])
    if data["policy_refusals"]:
        refusals = data["policy_refusals"]
        click.echo(f"\nThe mail server refused {refusals['count']} message(s) for its policy or our setup (5.7.x: "
                   f"relaying, SPF, DKIM); every message may hit it. Latest, {refusals['last_at']}: "
                   f"{refusals['last_error']}")
    if data["header_cuts"]:
        cuts = data["header_cuts"]
        click.echo(f"\n{cuts['count']} email(s) had a header value from data cut at limits.header_chars; latest, "
                   f"{cuts['last_at']}: {', '.join(cuts['last_headers'] or [])} for account {cuts['last_account']}")
    if data["failed_enrollments"]:
        click.echo("\nEnrollments stopped at a step that could not run (fix, then `playbookd enrollments retry`):")
        table(("ID", "PLAYBOOK", "ACCOUNT", "STEP", "ERROR"), [tuple(map(str, f.values()))
                                                               for f in data["failed_enrollments"]])
    if data["evaluation_failures"]:
        click.echo("\nAccounts the rules engine could not evaluate, in its latest evaluation that failed on any:")
        table(("AT", "ACCOUNT", "ERROR"), [tuple(map(str, f.values())) for f in data["evaluation_failures"]])
    if data["report_failures"]:
        click.echo("\nReport figures that could not be refreshed (the console shows the last ones computed; the "
                   "log has each traceback):")
        failed = sorted(data["report_failures"].items())
        table(("PLAYBOOK", "AT", "ERROR"), [(p, f["at"], f["error"]) for p, f in failed])
    if data["unknown_messages"]:
        click.echo("\nNeeds a decision (delivery was cut off; may or may not have been sent):")
        table(("ID", "TO", "PLAYBOOK", "ACCOUNT", "ERROR"), [tuple(m.values()) for m in data["unknown_messages"]])


def _echo_sources(sources: dict[str, dict[str, Any]]) -> None:
    if not sources:
        return
    click.echo("sources: " + " ".join(f"{name}={'ok' if s.get('ok', True) else 'FAILING'}"
                                      for name, s in sources.items()))
    failing = health.failing(sources)
    if failing:
        click.echo("\nSources that could not be read (nothing from them applied; the others synced; the daemon "
                   "tries again with backoff):")
        table(("SOURCE", "LAST SUCCESS", "FAILED SYNCS", "NEXT TRY", "ERROR"),
              [(name, s.get("last_success") or "never", s.get("attempts"), s.get("next_retry") or "-",
                s.get("last_error")) for name, s in failing.items()])


def echo_history(engine: Engine, account: str | None, playbook: str | None, limit: int,
                 contact: str | None = None) -> None:
    with engine.connect() as conn:
        entries = list(audit.history(conn, account, playbook, limit, contact))
    for entry in entries:
        click.echo(entry.line())
    if not entries:
        click.echo("no decisions recorded yet")


def echo_suppressions(engine: Engine) -> None:
    with engine.connect() as conn:
        rows = list(conn.execute(select(suppressions).order_by(suppressions.c.email)))
    table(("EMAIL", "CATEGORY", "REASON", "SINCE", "NOTE"),
          [(r.email, r.category, r.reason, str(aware(r.created_at))[:16], r.note or "") for r in rows])


def echo_settings() -> None:
    table(("SETTING", "DEFAULT", "HELP"), describe_settings())


def echo_outbox(engine: Engine, states: Sequence[str], limit: int, account: str | None = None) -> None:
    query = (select(outbox.c.id, outbox.c.state, outbox.c.to_addr, outbox.c.playbook_id, outbox.c.account_id,
                    outbox.c.attempts, outbox.c.not_before, outbox.c.last_error).order_by(outbox.c.id).limit(limit))
    if states:
        query = query.where(outbox.c.state.in_(list(states)))
    if account:
        query = query.where(outbox.c.account_id == account)
    with engine.connect() as conn:
        rows = [(r.id, r.state, r.to_addr, r.playbook_id, r.account_id, r.attempts,
                 r.not_before.strftime("%Y-%m-%d %H:%M") if r.not_before else "", (r.last_error or "")[:60])
                for r in conn.execute(query)]
    table(("ID", "STATE", "TO", "PLAYBOOK", "ACCOUNT", "TRIES", "NOT BEFORE", "LAST ERROR"), rows)


def echo_message(engine: Engine, message_id: int) -> None:
    with engine.connect() as conn:
        row = conn.execute(select(outbox).where(outbox.c.id == message_id)).first()
    if row is None:
        raise UserError(f"message {message_id}: no such message")
    sent = aware(row.sent_at)
    for name, value in (("Message-ID", row.message_id), ("To", row.to_addr), ("Subject", row.subject),
                        ("Playbook", row.playbook_id), ("Account", row.account_id), ("State", row.state),
                        ("Created", aware(row.created_at)), ("Sent", sent), ("Last error", row.last_error)):
        if value is not None:
            click.echo(f"{name}: {value}")
    click.echo("")
    if body_dropped(row.html, row.text):
        erased = row.to_addr.startswith(HASHED)  # `forget` replaces the address with its hash
        click.echo("(body erased by forget)" if erased else f"({DROPPED_NOTE})")
    else:
        click.echo(row.text)


def echo_enrollments(engine: Engine, state: str | None, playbook: str | None, account: str | None,
                     fmt: str, limit: int) -> None:
    query = select(enrollments).order_by(enrollments.c.id).limit(limit)
    for column, wanted in ((enrollments.c.state, state), (enrollments.c.playbook_id, playbook),
                           (enrollments.c.account_id, account)):
        if wanted:
            query = query.where(column == wanted)
    with engine.connect() as conn:
        rows = [_enrollment_data(r) for r in conn.execute(query)]
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row, default=str))
        return
    table(("ID", "PLAYBOOK", "ACCOUNT", "STATE", "STEP", "ENTERED", "NEXT DUE", "REASON"),
          [(r["id"], r["playbook"], r["account"], r["state"], r["step"], str(r["entered_at"])[:16],
            str(r["next_due_at"] or "-")[:16], r["reason"] or "") for r in rows])


def _enrollment_data(row: Any) -> dict[str, Any]:
    return {"id": row.id, "playbook": row.playbook_id, "account": row.account_id, "state": row.state,
            "step": row.step + 1, "entered_at": aware(row.entered_at), "next_due_at": aware(row.next_due_at),
            "finished_at": aware(row.finished_at), "reason": row.reason, "group": row.group_name,
            "goal_met_at": aware(row.goal_met_at), "goal_met_at_entry": bool(row.goal_at_entry)}


def echo_enrollment(engine: Engine, enrollment_id: int) -> None:
    with engine.connect() as conn:
        row = conn.execute(select(enrollments).where(enrollments.c.id == enrollment_id)).first()
        if row is None:
            raise UserError(f"enrollment {enrollment_id}: no such enrollment")
        query = select(audit_table).where(audit_table.c.enrollment_id == enrollment_id).order_by(audit_table.c.id)
        entries = [audit.Entry(aware(r.at) or r.at, r.account_id, r.playbook_id, r.enrollment_id, r.step,
                               r.contact, r.event, r.reason, r.detail) for r in conn.execute(query)]
    for key, value in _enrollment_data(row).items():
        click.echo(f"{key}: {value if value is not None else '-'}")
    click.echo("")
    for entry in entries:
        click.echo(entry.line())
