"""What the CLI commands do, beyond printing: project set-up, validation, preview, test sends."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import Engine

from playbookd import runtime
from playbookd.cadence.context import csm
from playbookd.cadence.preview import render_for
from playbookd.cadence.rehearsal import rehearse
from playbookd.cli import sampledata
from playbookd.config.settings import load_config
from playbookd.delivery.message import Outgoing, build_message, make_message_id
from playbookd.delivery.transports import DeliveryError, make_transport
from playbookd.engine.goal_overlap import goal_overlaps
from playbookd.engine.values import unseen_values
from playbookd.errors import DependencyError, Problem, UserError, ValidationError
from playbookd.model import senders
from playbookd.model.addresses import AddressError, canonical, lookup_form
from playbookd.model.launch import deprecations
from playbookd.store import audit, migrate
from playbookd.store.accounts import get_account, load_account_types
from playbookd.store.database import connect, insert_ignore, transaction, utcnow
from playbookd.store.schema import suppressions
from playbookd.sync import events

SKELETON = ("config.yaml", "playbooks", "email_templates")


def skeleton_root() -> Path:
    """Where the sample config, playbooks and templates live: the source tree, else the install prefix."""
    for candidate in (Path(__file__).resolve().parents[2], Path(sys.prefix) / "share" / "playbookd"):
        if all((candidate / name).exists() for name in SKELETON):
            return candidate
    raise UserError("cannot find the sample config, playbooks and templates to copy")


def init_project(directory: Path, accounts: int) -> str:
    if directory.exists() and any(directory.iterdir()):
        raise UserError(f"{directory} is not empty; choose a new folder")
    root = skeleton_root()
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "config.yaml", directory / "config.yaml")
    for name in ("playbooks", "email_templates"):
        shutil.copytree(root / name, directory / name)
    sampledata.write_sample(directory / "data", accounts, utcnow())
    return (f"created {directory}: config.yaml, playbooks/, email_templates/, data/ ({accounts} sample accounts)\n"
            f"next: cd {directory} && playbookd validate && playbookd run --once")


def _store_if_present(database: str) -> Engine | None:
    """The store for field and role names, without creating an SQLite file as a side effect."""
    if database.startswith("sqlite:///") and not Path(database[len("sqlite:///"):]).exists():
        return None
    try:
        return connect(database, create=False)
    except DependencyError:
        return None


def validate(config_path: Path, strict: bool) -> tuple[str, list[Problem]]:
    """The summary and the warnings; problems raise. `strict` makes warnings problems too."""
    config = load_config(config_path)
    store = _store_if_present(config.database)
    rt = runtime.load(config=config, engine=store)
    if store is not None and (failures := rehearse(rt, store)):
        raise ValidationError(failures, "templates fail for synced accounts")
    warnings = sorted(unseen_values(rt, store) + goal_overlaps(rt, store, utcnow())) if store is not None else []
    warnings += deprecations(Path(config.playbooks))
    if strict and warnings:
        raise ValidationError(warnings, "validation failed (--strict: warnings count)")
    names = {name for p in rt.playbooks for name, _ in p.templates()}
    return (f"ok: {config.path}: {len(rt.playbooks)} playbook(s), {len(names)} template name(s), "
            f"{len(config.segments)} segment(s), {len(config.sources)} source(s)"), warnings


def preview(rt: runtime.Runtime, engine: Engine, template: str, account_id: str, contact: str | None,
            show_html: bool) -> str:
    rendered, to = render_for(rt, engine, template, account_id, contact)
    head = [f"Template: {rendered.template}", *_sender_lines(rt, engine, rendered.sender, account_id), f"To: {to}",
            f"Subject: {rendered.subject}"]
    if rendered.preheader:
        head.append(f"Preheader: {rendered.preheader}")
    return "\n".join([*head, "", rendered.html if show_html else rendered.text])


def _sender_lines(rt: runtime.Runtime, engine: Engine, spec: str | None, account_id: str) -> list[str]:
    """From (and Reply-To) as the template's `from:` makes them for this account."""
    with engine.connect() as conn:
        account = get_account(conn, account_id, load_account_types(conn)) or {}
    delivery = rt.config.delivery
    sender = senders.resolve(spec, account, csm(account, rt.config.company.name)["name"], delivery.from_,
                             delivery.reply_to, delivery.sending_domains, rt.config.limits.header_chars)
    return [f"From: {sender.from_addr}", *([f"Reply-To: {sender.reply_to}"] if sender.reply_to else [])]


def send_test(rt: runtime.Runtime, engine: Engine, to_addr: str, template: str | None,
              account_id: str | None) -> str:
    if template and not account_id:
        raise UserError("--template needs --account to render for")
    company = rt.config.company
    url = company.public_url
    subject, html, text = "playbookd test message", "<p>Delivery works.</p>", "Delivery works."
    if template and account_id:
        rendered, _ = render_for(rt, engine, template, account_id, None)
        subject, html, text = rendered.subject, rendered.html, rendered.text
    message_id = make_message_id(f"test:{utcnow().timestamp()}", "playbookd.local")
    to_addr = _address(to_addr)
    message = build_message(Outgoing(message_id, rt.config.delivery.from_, to_addr, subject, html, text, url))
    return asyncio.run(_send_one(rt, message, to_addr))


async def _send_one(rt: runtime.Runtime, message: Any, to_addr: str) -> str:
    transport = make_transport(rt.config.delivery)
    try:
        await transport.send(message)
    except DeliveryError as exc:
        raise DependencyError(f"sending to {to_addr} failed: {exc}") from None
    finally:
        await transport.close()
    return f"sent a test message to {to_addr} via {rt.config.delivery.transport}"


def add_event(engine: Engine, account: str, name: str, data: str, event_id: str | None) -> str:
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise UserError(f"--data is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise UserError("--data must be a JSON object, e.g. '{\"score\": 4}'")
    item = {"account": account, "name": name, "data": payload, **({"id": event_id} if event_id else {})}
    recorded = events.record(engine, [item])
    return f"recorded event {name} for {account}" if recorded.added else f"event {event_id} was already recorded"


def _address(email: str) -> str:
    try:
        return canonical(email)
    except AddressError as exc:
        raise UserError(f"{email!r} is not a deliverable address: {exc}") from None


def suppress_add(engine: Engine, email: str, category: str, note: str | None) -> str:
    address = _address(email)  # stored canonical, as contacts are, so `"a"@x` and `a(x)@x` match it too
    with transaction(engine) as conn:
        insert_ignore(conn, suppressions, [{"email": address, "category": category, "reason": "manual",
                                            "note": note, "created_at": utcnow()}])
        audit.record(conn, "suppressed", contact=address, reason="manual", detail={"category": category})
    return f"suppressed {address} ({category})"


def suppress_remove(engine: Engine, email: str, category: str) -> str:
    address = lookup_form(email)
    with transaction(engine) as conn:
        gone = conn.execute(delete(suppressions).where(suppressions.c.email == address,
                                                       suppressions.c.category == category)).rowcount
    if not gone:
        raise UserError(f"{address} is not suppressed for {category!r}")
    return f"removed suppression of {address} ({category})"


def db_upgrade(database: str) -> str:
    engine = connect(database, create=False)
    before, after = migrate.upgrade(engine)
    where = engine.url.render_as_string(hide_password=True)
    return f"{where}: schema at revision {after}" + (f" (was {before or 'empty'})" if before != after else "")
