"""How `playbookd report` prints: a block per playbook for people, JSON lines or CSV for scripts."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import click

from playbookd.report.results import Comparison, Group, PlaybookResult

CSV_COLUMNS = ("playbook", "section", "name", "versus", "entered", "met_at_entry", "goal_met", "rate",
               "emails_sent", "clicked", "click_rate", "unsubscribe_rate", "complaint_rate", "lift",
               "ci95_low", "ci95_high", "p_value",
               "note")


def _group_json(group: Group) -> dict[str, Any]:
    return {"name": group.name, "entered": group.entered, "met_at_entry": group.met_at_entry,
            "goal_met": group.goal_met, "rate": group.rate, "emails_sent": group.emails_sent,
            "emailed": group.emailed, "clicked": group.clicked, "click_rate": group.click_rate,
            "recipients": group.recipients, "unsubscribed": group.unsubscribed,
            "unsubscribe_rate": group.unsubscribe_rate, "complaints": group.complained,
            "complaint_rate": group.complaint_rate}


def _comparison_json(found: Comparison) -> dict[str, Any]:
    return {"group": found.group, "versus": found.versus, "lift": found.lift,
            "ci95": list(found.ci95) if found.ci95 else None, "p_value": found.p_value,
            **({"note": found.note} if found.note else {})}


def as_json(result: PlaybookResult) -> dict[str, Any]:
    return {
        "playbook": result.playbook, "entered": result.entered, "active": result.states["active"],
        "completed": result.states["completed"], "failed": result.states["failed"],
        "exited": dict(sorted(result.exited.items())),
        "emails": {"sent": result.emails["sent"], "failed": result.emails["failed"],
                   "skipped": dict(sorted(result.skipped.items()))},
        "tasks": {"created": sum(result.tasks.values()), "done": result.tasks["done"]},
        "goal": {"met": result.met, "met_at_entry": result.met_at_entry, "rate": result.rate,
                 "median_seconds_to_goal": result.median_seconds} if result.has_goal else None,
        "groups": [_group_json(g) for g in result.ordered_groups()],
        "comparisons": [_comparison_json(c) for c in result.comparisons],
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counter.items()))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    return [(indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))).rstrip()
            for row in [headers, *rows]]


def _span(seconds: float) -> str:
    """A median time, to the hour or minute: `3d 4h`, `5h 20min`."""
    minutes = int(seconds // 60)
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    return f"{hours}h {mins}min" if hours else f"{mins}min"


def _goal_line(result: PlaybookResult) -> str:
    if not result.has_goal:
        return "  goal: none"
    median = "-" if result.median_seconds is None else _span(result.median_seconds)
    measured = result.entered - result.met_at_entry
    return (f"  goal: met {result.met} of {measured} ({_percent(result.rate)}), already met at entry "
            f"{result.met_at_entry}, median time to goal {median}")


def _comparison_row(found: Comparison) -> list[str]:
    if found.lift is None or found.ci95 is None:
        return [found.group, found.versus, found.note or "", "", ""]
    low, high = found.ci95
    p_value = "-" if found.p_value is None else f"{found.p_value:.4g}"
    return [found.group, found.versus, f"{_points(found.lift)} pts", f"[{_points(low)}, {_points(high)}]", p_value]


def text_lines(result: PlaybookResult) -> list[str]:
    states = result.states
    lines = [f"playbook {result.playbook}",
             f"  enrollments: entered {result.entered}, active {states['active']}, completed {states['completed']}, "
             f"failed {states['failed']}, exited {states['exited']}"
             + (f" ({_counts(result.exited)})" if result.exited else ""),
             f"  emails: sent {result.emails['sent']}, failed {result.emails['failed']}, skipped "
             f"{result.emails['skipped']}" + (f" ({_counts(result.skipped)})" if result.skipped else ""),
             f"  tasks: created {sum(result.tasks.values())}, done {result.tasks['done']}",
             _goal_line(result)]
    groups = [[g.name, str(g.entered), str(g.met_at_entry), str(g.goal_met), _percent(g.rate), str(g.emails_sent),
               f"{g.clicked} ({_percent(g.click_rate)})", _percent(g.unsubscribe_rate), _percent(g.complaint_rate)]
              for g in result.ordered_groups()]
    if groups:
        lines += _table(("GROUP", "ENTERED", "MET AT ENTRY", "GOAL MET", "RATE", "EMAILS", "CLICKED",
                         "UNSUBSCRIBED", "COMPLAINTS"), groups)
    if result.comparisons:
        lines += _table(("GROUP", "VERSUS", "LIFT", "95% CI", "P-VALUE"),
                        [_comparison_row(c) for c in result.comparisons])
    return lines


def csv_rows(result: PlaybookResult) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{"playbook": result.playbook, "section": "playbook", "entered": result.entered,
                                   "met_at_entry": result.met_at_entry, "goal_met": result.met,
                                   "rate": result.rate, "emails_sent": result.emails["sent"]}]
    for g in result.ordered_groups():
        rows.append({"playbook": result.playbook, "section": "group", "name": g.name, "entered": g.entered,
                     "met_at_entry": g.met_at_entry, "goal_met": g.goal_met, "rate": g.rate,
                     "emails_sent": g.emails_sent, "clicked": g.clicked, "click_rate": g.click_rate,
                     "unsubscribe_rate": g.unsubscribe_rate,
                     "complaint_rate": g.complaint_rate})
    for c in result.comparisons:
        low, high = c.ci95 or (None, None)
        rows.append({"playbook": result.playbook, "section": "comparison", "name": c.group, "versus": c.versus,
                     "lift": c.lift, "ci95_low": low, "ci95_high": high, "p_value": c.p_value, "note": c.note})
    return rows


def echo_report(results: Sequence[PlaybookResult], fmt: str) -> None:
    if fmt == "json":
        for result in results:
            click.echo(json.dumps(as_json(result), sort_keys=False))
        return
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for result in results:
            writer.writerows(csv_rows(result))
        click.echo(buffer.getvalue(), nl=False)
        return
    if not results:
        click.echo("no enrollments in this period")
    for index, result in enumerate(results):
        click.echo(("\n" if index else "") + "\n".join(text_lines(result)))
