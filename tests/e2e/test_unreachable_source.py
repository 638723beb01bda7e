"""A source whose system is down is a dependency problem (exit 3), never a validation failure, and
the other sources still sync."""

from __future__ import annotations

from pathlib import Path

import yaml
from cli_helpers import edit_config, playbookd
from smtp_server import free_port


def test_a_database_source_that_is_down_fails_alone_with_exit_3(tmp_path: Path) -> None:
    assert playbookd("init", "project", "--accounts", "20", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    sources = yaml.safe_load((project / "config.yaml").read_text())["sources"]
    down = {"name": "usage", "kind": "sql", "entity": "accounts",
            "url": f"postgresql+psycopg://reader@127.0.0.1:{free_port()}/app?connect_timeout=3",
            "query": "SELECT account_id AS id, max(seen_at) AS last_seen_at FROM sessions GROUP BY 1"}
    edit_config(project, sources=[*sources, down])
    validated = playbookd("validate", cwd=project)
    assert validated.returncode == 0, validated.stderr
    synced = playbookd("sync", cwd=project)
    assert synced.returncode == 3
    assert "crm_accounts (accounts): read 20, inserted 20" in synced.stdout
    assert "usage (accounts): read 0" in synced.stdout and "cannot connect" in synced.stdout
    assert "cannot read source(s) usage now (down, or changing while read)" in synced.stderr
    assert "the others synced" in synced.stderr
    once = playbookd("run", "--once", cwd=project)
    assert once.returncode == 3 and "enrolled" in once.stdout  # the cycle still evaluated and delivered
