"""Tables of the state store. Portable between SQLite and PostgreSQL (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()
# SQLite wants INTEGER PRIMARY KEY for autoincrement; PostgreSQL gets a BIGINT.
Id = BigInteger().with_variant(Integer(), "sqlite")
When = DateTime(timezone=True)

# An account's field values live in `data` (JSON, typed: dates as ISO text) because most of
# them are custom columns; `changes` holds {field: {"from": old, "at": iso}} for fields that
# changed in the latest sync of the source that supplies them. `unseen` counts the writes since an
# evaluation last saw the account, `due_us` is the next moment (epoch microseconds) a time-based
# condition of a live playbook can flip for it: together they are what an incremental evaluation
# reads (engine.scope).
accounts = Table(
    "accounts", metadata,
    Column("id", String(200), primary_key=True),
    Column("segment", String(100), nullable=False),
    Column("data", JSON, nullable=False),
    Column("changes", JSON, nullable=False),
    Column("synced_at", When, nullable=False),
    Column("created_at", When, nullable=False),
    Column("source_digest", String(32)),  # of the source row last synced into it (sync.digests)
    Column("unseen", Integer, nullable=False, default=1, server_default="1"),  # a new account is unseen
    Column("due_us", BigInteger),
)
Index("ix_accounts_unseen", accounts.c.unseen)
Index("ix_accounts_due", accounts.c.due_us)

# The digest of each row an accounts source after the first one gave (the first one's is
# `accounts.source_digest`): sources over the same ids each skip their own unchanged rows.
account_digests = Table(
    "account_digests", metadata,
    Column("source", String(200), primary_key=True),
    Column("account_id", String(200), primary_key=True),
    Column("digest", String(32), nullable=False),
)
Index("ix_account_digests_account", account_digests.c.account_id)

# Known custom fields and their inferred types, so validate knows what a playbook may name.
fields = Table(
    "fields", metadata,
    Column("entity", String(20), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("type", String(20), nullable=False),
)

contacts = Table(
    "contacts", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("first_name", String(200)),
    Column("last_name", String(200)),
    Column("role", String(100)),
    Column("timezone", String(64)),
    Column("status", String(40), nullable=False, default="active"),
    Column("is_primary", Boolean, nullable=False, default=False),
    Column("position", Integer, nullable=False, default=0),
    Column("data", JSON, nullable=False),
    Column("synced_at", When, nullable=False),
    Column("source_digest", String(32)),  # of the source row last synced into it (sync.digests)
    UniqueConstraint("account_id", "email", name="uq_contacts_account_email"),
)
Index("ix_contacts_email", contacts.c.email)

enrollments = Table(
    "enrollments", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("playbook_id", String(200), nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("state", String(20), nullable=False),  # active | failed | completed | exited
    Column("step", Integer, nullable=False, default=0),  # index of the next step to run
    Column("step_key", String(200)),  # and its stable identity, so an edited playbook keeps the place
    Column("next_due_at", When),
    Column("entered_at", When, nullable=False),
    Column("finished_at", When),
    Column("reason", Text),
    Column("goal_met_at", When),  # the first evaluation at which the goal held (a conversion)
    Column("goal_at_entry", Boolean),  # the goal already held at entry: never a conversion
    Column("group_name", String(400)),  # control, a variant, `<step>:<variant>, ...`, or treatment
    Column("segment", String(100)),  # the account's segment at entry
    Column("event_id", BigInteger),
    # one live enrollment per (playbook, account): NULL for finished rows
    Column("active_key", String(420), unique=True),
)
Index("ix_enrollments_due", enrollments.c.state, enrollments.c.next_due_at)
Index("ix_enrollments_pa", enrollments.c.playbook_id, enrollments.c.account_id)
Index("ix_enrollments_entered", enrollments.c.playbook_id, enrollments.c.entered_at)
Index("ix_enrollments_account", enrollments.c.account_id)  # an account's page (migration 0009)
# a playbook's report, funnel and goals per day, from the index alone (migration 0011)
Index("ix_enrollments_report", enrollments.c.playbook_id, enrollments.c.state, enrollments.c.group_name,
      enrollments.c.goal_at_entry, enrollments.c.goal_met_at, enrollments.c.entered_at, enrollments.c.step)
Index("ix_enrollments_goals", enrollments.c.playbook_id, enrollments.c.goal_met_at)

outbox = Table(
    "outbox", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False, unique=True),  # enrollment:step identity:contact (Playbook.step_token)
    Column("message_id", String(300), nullable=False, unique=True),
    Column("enrollment_id", BigInteger),
    Column("playbook_id", String(200), nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("contact_id", BigInteger),
    Column("to_addr", String(320), nullable=False),
    Column("template", String(400), nullable=False),
    Column("variant", String(100)),
    Column("category", String(100), nullable=False, default="default"),
    Column("priority", Integer, nullable=False, default=0),
    Column("subject", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("headers", JSON, nullable=False),
    # queued | claimed | sending | sent | failed | skipped | unknown
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("not_before", When, nullable=False),
    Column("created_at", When, nullable=False),
    Column("sent_at", When),
    Column("last_error", Text),
    Column("claimed_by", String(200)),
)
Index("ix_outbox_due", outbox.c.state, outbox.c.not_before)
# the claim's order within the queue, so each round reads its first rows off the index instead of sorting
# every queued row (migration 0015)
Index("ix_outbox_claim", outbox.c.state, outbox.c.priority.desc(), outbox.c.not_before, outbox.c.id)
Index("ix_outbox_to", outbox.c.to_addr, outbox.c.state)
Index("ix_outbox_account", outbox.c.account_id, outbox.c.id)  # an account's emails, newest first
# a playbook's report joins by enrollment and counts from the index, not the wide rows (migration 0011)
Index("ix_outbox_report", outbox.c.enrollment_id, outbox.c.state, outbox.c.to_addr, outbox.c.sent_at,
      outbox.c.category)

clicks = Table(  # one row per (message, link, kind, reason): a second click on a link is not a new one
    "clicks", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("message_key", String(200), nullable=False),  # the outbox row's key
    Column("link", Integer, nullable=False),  # the link's place among the message's links
    Column("url", Text, nullable=False),
    Column("kind", String(20), nullable=False),  # clicked | scanned
    Column("reason", String(40), nullable=False),  # scanned: head, scanner_agent or too_soon; else click
    Column("enrollment_id", BigInteger),
    Column("playbook_id", String(200), nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("contact", String(320), nullable=False),
    Column("at", When, nullable=False),
    UniqueConstraint("message_key", "link", "kind", "reason", name="uq_clicks_once"),
)
Index("ix_clicks_enrollment", clicks.c.enrollment_id, clicks.c.kind)

# CSM tasks as work items: open -> done | dismissed, or snoozed until a time (then open again).
tasks = Table(
    "tasks", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False, unique=True),  # enrollment:step of the enrollment that created it
    Column("account_id", String(200), nullable=False),
    Column("playbook_id", String(200), nullable=False),
    Column("enrollment_id", BigInteger),  # the latest enrollment it serves: a refresh moves it
    Column("title", Text, nullable=False),
    Column("assignee", String(320)),
    Column("due_at", When),
    Column("state", String(20), nullable=False, default="open"),  # open | snoozed | done | dismissed
    Column("created_at", When, nullable=False),
    Column("step_key", String(200)),  # the task step's stable identity; NULL for tasks made before 0008
    # playbook, account and step while open or snoozed, NULL once closed: one open task per step, whatever
    # replicas race to create it
    Column("open_key", String(620)),
    Column("snoozed_until", When),
    Column("assigned_by", String(200)),  # who reassigned it; NULL: the playbook chose, and a refresh may again
    Column("note", Text),  # the latest change's note
    Column("refresh_count", Integer, nullable=False, default=0, server_default="0"),
    Column("refreshed_at", When),
    Column("updated_at", When),
    Column("closed_at", When),  # done or dismissed at
    # counts every created, refreshed or changed version: a receiver keeps the highest it has seen
    Column("revision", Integer, nullable=False, default=1, server_default="1"),
)
Index("uq_tasks_open_key", tasks.c.open_key, unique=True)
Index("ix_tasks_state_due", tasks.c.state, tasks.c.due_at)
Index("ix_tasks_queue", tasks.c.state, tasks.c.assignee, tasks.c.due_at)  # the console's queue by assignee
Index("ix_tasks_account", tasks.c.account_id)
Index("ix_tasks_enrollment", tasks.c.enrollment_id)

webhooks = Table(
    "webhooks", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False, unique=True),
    Column("account_id", String(200), nullable=False),
    Column("playbook_id", String(200), nullable=False),
    Column("url", Text, nullable=False),
    Column("body", JSON, nullable=False),
    Column("enrollment_id", BigInteger),
    Column("state", String(20), nullable=False),  # queued | sent | failed | skipped
    Column("attempts", Integer, nullable=False, default=0),
    Column("not_before", When, nullable=False),
    Column("last_error", Text),
    Column("created_at", When, nullable=False),
    Column("kind", String(20)),  # NULL: a webhook step's; task: a task's change, mirrored to tasks.webhook
)

events = Table(
    "events", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("data", JSON, nullable=False),
    Column("occurred_at", When, nullable=False),
    Column("received_at", When, nullable=False),
    Column("processed_at", When),
    Column("dedupe_key", String(300), unique=True),
)
Index("ix_events_pending", events.c.processed_at)

audit = Table(
    "audit", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", When, nullable=False),
    Column("account_id", String(200)),
    Column("playbook_id", String(200)),
    Column("enrollment_id", BigInteger),
    Column("contact", String(320)),
    Column("step", Integer),
    Column("event", String(40), nullable=False),
    Column("reason", Text),
    Column("detail", JSON),
)
Index("ix_audit_account", audit.c.account_id, audit.c.at)
Index("ix_audit_playbook", audit.c.playbook_id, audit.c.at)
Index("ix_audit_enrollment_event", audit.c.enrollment_id, audit.c.event)  # the report's skips (0011)
Index("ix_audit_contact", audit.c.contact, audit.c.at)  # `history --contact`: one person's timeline

# Each occurrence of a calendar playbook's schedule, once: `run` (its accounts enter at the evaluation
# at run_at; `merged` earlier occurrences missed while down went with it) or `missed` (found past its
# catch_up). The unique key makes one replica, or one of two racing commands, open it.
calendar_runs = Table(
    "calendar_runs", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("playbook_id", String(200), nullable=False),
    Column("occurrence", When, nullable=False),
    Column("state", String(20), nullable=False),  # run | missed
    Column("run_at", When, nullable=False),
    Column("merged", Integer, nullable=False, default=0),
    UniqueConstraint("playbook_id", "occurrence", name="uq_calendar_runs_occurrence"),
)
Index("ix_calendar_runs_run_at", calendar_runs.c.run_at)

# Evaluation work split into account-id ranges [lo, hi) that every replica takes from.
ranges = Table(
    "ranges", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_at", When, nullable=False),  # the evaluation moment all ranges of a run share
    Column("lo", String(200)),
    Column("hi", String(200)),
    Column("state", String(20), nullable=False),  # queued | running | done
    Column("claimed_by", String(200)),
    Column("claimed_at", When),
    Column("enrolled", Integer),
    Column("full", Boolean, nullable=False, default=True, server_default="1"),  # every account, or the changed
)
Index("ix_ranges_state", ranges.c.state, ranges.c.id)

bounces = Table(  # consecutive soft bounces per address, cleared by a delivery
    "bounces", metadata,
    Column("email", String(320), primary_key=True),
    Column("soft_in_row", Integer, nullable=False),
    Column("updated_at", When, nullable=False),
)

suppressions = Table(
    "suppressions", metadata,
    Column("email", String(320), primary_key=True),
    Column("category", String(100), primary_key=True),  # '*' for everything
    Column("reason", String(40), nullable=False),  # unsubscribed | bounced | manual | complaint
    Column("note", Text),
    Column("created_at", When, nullable=False),
)

# Health score history, one row per account and day (in the configured time zone) on which its score or
# colour moved: the last score and colour of the day, and its highest and lowest, the value it had
# before the day's first move included. A day without a row repeats the one before.
health_history = Table(
    "health_history", metadata,
    Column("account_id", String(200), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("score", Float),
    Column("color", String(20)),
    Column("high", Float),
    Column("low", Float),
    Column("updated_at", When, nullable=False),
)
Index("ix_health_history_day", health_history.c.day)

# Small named values: last successful cycle, leader heartbeat, schema facts.
state = Table(
    "state", metadata,
    Column("key", String(200), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", When, nullable=False),
)


# Launch controls (engine/launch.py). A playbook's status set in the database by `playbookd playbooks
# pause|resume`, which stands while the file still says `yaml_status`; and since when it holds.
playbook_states = Table(
    "playbook_states", metadata,
    Column("playbook_id", String(200), primary_key=True),
    Column("status", String(20)),  # live | paused; NULL: as the file says
    Column("yaml_status", String(20)),  # what the file said when it was set
    Column("set_at", When),
    Column("note", Text),
    Column("held_since", When),  # its waits are frozen from here (paused or draft); NULL while it acts
)

# Accounts that qualified for a ramped (launch.max_new_per_day) or paused playbook and wait to enter,
# first qualified first; `seen_at` is the latest evaluation that found them still qualifying.
launch_queue = Table(
    "launch_queue", metadata,
    Column("playbook_id", String(200), primary_key=True),
    Column("account_id", String(200), primary_key=True),
    Column("segment", String(100), nullable=False),
    Column("event_id", BigInteger),
    Column("qualified_at", When, nullable=False),
    Column("seen_at", When, nullable=False),
)
Index("ix_launch_queue_order", launch_queue.c.playbook_id, launch_queue.c.qualified_at)

# New enrollments per ramped playbook per calendar day (config.yaml's timezone): the row every replica
# locks before admitting more, so the day's number holds across evaluation ranges.
launch_days = Table(
    "launch_days", metadata,
    Column("playbook_id", String(200), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("entered", Integer, nullable=False),
)

# A playbook's report figures (report.snapshots) as the daemon's leader last computed them over all its
# enrollments, so the console reads one row instead of counting them at every view. `format` is the
# layout of `figures`: a row written by another version is ignored until the next refresh rewrites it.
report_snapshots = Table(
    "report_snapshots", metadata,
    Column("playbook_id", String(200), primary_key=True),
    Column("computed_at", When, nullable=False),
    Column("seconds", Float, nullable=False),  # how long computing it took
    Column("enrollments", BigInteger, nullable=False),
    Column("format", Integer, nullable=False),
    Column("figures", JSON, nullable=False),
)
