"""What `import playbookd` gives a Python user, and what it costs a rules-engine worker."""

from __future__ import annotations

import subprocess
import sys

import pytest

import playbookd
from playbookd.engine import explain, simulate
from playbookd.runtime import Runtime, load


def test_the_public_names_are_the_layers_own() -> None:
    assert (playbookd.load, playbookd.Runtime) == (load, Runtime)
    assert (playbookd.simulate, playbookd.explain) == (simulate.simulate, explain.explain)
    assert set(playbookd.__all__) == {"Runtime", "__version__", "explain", "load", "simulate"}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        playbookd.nope  # noqa: B018


def test_a_rules_worker_imports_neither_the_database_nor_the_templates() -> None:
    # workers are spawned, so each one pays for what importing the rules module pulls in
    code = "import sys, playbookd.engine.rules; print(sorted({'sqlalchemy', 'jinja2', 'pydantic'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_only_the_report_loads_scipy() -> None:
    # scipy takes seconds to import: every other command (and the daemon) starts without it
    code = "import sys, playbookd.cli.commands, playbookd.service.daemon; print('scipy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
