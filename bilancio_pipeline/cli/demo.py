"""`bilancio-pipeline demo`: a real balanced sweep through Dagster on the embedded default,
its job_metrics, then the UI to look at it."""

import click

from bilancio_pipeline.cli.sweep import run_and_report
from bilancio_pipeline.cli.ui import DEFAULT_PORT, serve

DEMO_SWEEP = {
    "n_agents": 50, "maturity_days": 10, "kappas": [0.25, 0.5, 1.0, 2.0], "concentrations": [1.0],
    "mus": [0.0, 0.5, 1.0], "outside_mid_ratios": [1.0], "seeds": [42, 43], "regime": "active",
    "cash_accounting": "conserving", "description": "demo: passive vs active across kappa and mu", "job_id": "",
}


@click.command("demo")
@click.option("--ui/--no-ui", default=True, show_default=True, help="start the Dagster UI afterwards")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True)
def command(ui, port):
    """Run a 48-run balanced sweep (4 kappas x 3 mus x 2 seeds, passive and active) and show it."""
    outcome = run_and_report("balanced", dict(DEMO_SWEEP))
    job_id = outcome["job"]["job_id"]
    click.echo(f"\nQuery it:  bilancio-pipeline jobs get {job_id}")
    click.echo(f"           bilancio-pipeline metrics query --job {job_id} --where 'kappa < 1' --format csv")
    if ui:
        serve("127.0.0.1", port)
    else:
        click.echo(f"Dagster UI: run `bilancio-pipeline ui`, then open http://127.0.0.1:{port}")
