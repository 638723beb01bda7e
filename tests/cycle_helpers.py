"""A project driven in-process, one full cycle at a chosen moment, on a real database."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from cli_helpers import small_project
from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd import runtime
from playbookd.config.settings import load_config
from playbookd.service import cycle
from playbookd.store.database import connect
from playbookd.store.schema import outbox

ACCOUNTS = ("id,name,annual_revenue,status,plan,lifecycle_stage,csm_email\n"
            "ACC-1,Harbor Foods,5000,active,basic,adopted,maria@acme.example\n")
CONTACTS = "account_id,email,first_name,role,status,is_primary\nACC-1,ana@harbor.example,Ana,admin,active,true\n"


class Project:
    def __init__(self, tmp_path: Path, playbooks: dict[str, str], accounts_csv: str = ACCOUNTS,
                 contacts_csv: str = CONTACTS, **config: Any) -> None:
        self.path = small_project(tmp_path, accounts_csv, contacts_csv, playbooks, **config)
        self.config = load_config(self.path / "config.yaml")
        self.engine: Engine = connect(self.config.database)
        self.runtime = runtime.load(engine=self.engine, config=self.config)

    def run(self, at: datetime) -> cycle.CycleReport:
        return cycle.run_once(self.runtime, self.engine, at=at)

    def rows(self, table: Any, *where: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(table).where(*where).order_by(table.c.id)))

    def emails(self) -> list[str]:
        return [r.template.split("/")[-1] for r in self.rows(outbox)]

    def set_accounts(self, text: str) -> None:
        (self.path / "data" / "accounts.csv").write_text(text)
