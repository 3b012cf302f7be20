"""`bilancio-pipeline`: one group; each subcommand lives in its own module."""

from __future__ import annotations

import importlib

import click

# command name -> module exposing a click command or group named `command`
COMMANDS = {
    "simulate": "bilancio_pipeline.cli.simulate",
    "sweep": "bilancio_pipeline.cli.sweep",
    "jobs": "bilancio_pipeline.cli.jobs",
    "metrics": "bilancio_pipeline.cli.metrics",
    "artifacts": "bilancio_pipeline.cli.artifacts",
    "volume": "bilancio_pipeline.cli.volume",
    "report": "bilancio_pipeline.cli.report",
    "demo": "bilancio_pipeline.cli.demo",
    "ui": "bilancio_pipeline.cli.ui",
    "db": "bilancio_pipeline.cli.db",
}


class LazyGroup(click.Group):
    """Imports a subcommand's module only when it runs, so `--help` and each command start fast."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        return self._load(name)

    @staticmethod
    def _load(name):
        if name not in COMMANDS:
            return None
        return importlib.import_module(COMMANDS[name]).command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bilancio_pipeline")
def cli():
    """Run, keep and query Kalecki-ring simulation sweeps."""


def main():
    cli()
