"""playbookd: tech-touch customer success playbooks."""

__version__ = "0.1.0"
