"""`bilancio-pipeline ui`: the Dagster UI and daemon, on the same instance the command line uses."""

import os
import shutil
import sys

import click

DEFAULT_PORT = 3000


def serve(host: str, port: int) -> None:
    """Replace this process with `dagster dev` (webserver + daemon) for our definitions."""
    from bilancio_pipeline.defs.instance import apply_dagster_env, get_instance

    # Create the instance's tables here, once: the webserver and the daemon would otherwise both
    # create them at the same moment on a fresh instance.
    get_instance().dispose()
    home = os.environ["DAGSTER_HOME"]
    apply_dagster_env()
    dagster = shutil.which("dagster", path=os.path.dirname(sys.executable)) or shutil.which("dagster")
    if not dagster:
        raise click.ClickException("the `dagster` command is not installed; run `bash .ci/install`")
    click.echo(f"Dagster UI: http://{host}:{port}  (instance: {home}; Ctrl-C to stop)")
    sys.stdout.flush()
    os.execv(dagster, [dagster, "dev", "-m", "bilancio_pipeline.definitions", "-h", host, "-p", str(port)])


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True)
def command(host, port):
    """Start the Dagster UI and daemon (launch sweeps from the launch_sweep_job Launchpad)."""
    serve(host, port)
