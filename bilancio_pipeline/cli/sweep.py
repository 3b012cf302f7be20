"""`bilancio-pipeline sweep balanced|ring ...`: launch a sweep through Dagster, in this process."""

import sys

import click

from bilancio_pipeline.sweeps.spec import CHOICES, DEFAULTS, HELP

SUMMARY_FIELDS = (
    "n_pairs", "mean_trading_effect", "trading_effect_ci_low", "trading_effect_ci_high", "std_trading_effect",
    "min_trading_effect", "max_trading_effect",
    "positive_effects", "negative_effects", "neutral_effects", "mean_delta_passive", "mean_delta_active",
    "mean_phi_passive", "mean_phi_active", "mean_trading_effect_clean",
)


def _floats(ctx, param, value):
    try:
        return [float(v) for v in value.split(",") if v.strip()] if value else []
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None


def _ints(ctx, param, value):
    try:
        return [int(v) for v in value.split(",") if v.strip()] if value else []
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None


def _list_option(name: str, parse):
    default = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in getattr(DEFAULTS, name))
    return click.option(f"--{name.replace('_', '-')}", callback=parse, default=default, show_default=True,
                        help=HELP[name])


def _choice_option(name: str, default=None, **kwargs):
    return click.option(f"--{name.replace('_', '-')}", type=click.Choice(list(CHOICES[name])), default=default,
                        help=HELP[name], **kwargs)


def sweep_options(fn):
    """The sweep's options, with the defaults, choices and help of `sweeps.spec` (as the Launchpad form)."""
    options = [
        click.option("--n-agents", type=int, default=DEFAULTS.n_agents, show_default=True, help=HELP["n_agents"]),
        click.option("--maturity-days", type=int, default=DEFAULTS.maturity_days, show_default=True,
                     help=HELP["maturity_days"]),
        *(_list_option(name, _floats) for name in ("kappas", "concentrations", "mus", "outside_mid_ratios")),
        _list_option("seeds", _ints),
        _choice_option("regime"),
        _choice_option("cash_accounting", DEFAULTS.cash_accounting, show_default=True),
        click.option("--description", default=DEFAULTS.description, help=HELP["description"]),
        click.option("--job-id", default=DEFAULTS.job_id, help=HELP["job_id"]),
        _choice_option("executor"),
        _choice_option("artifact_policy", DEFAULTS.artifact_policy, show_default=True),
        click.option("--recompute", is_flag=True, default=False, help=HELP["recompute"]),
        click.option("--batch-size", type=click.IntRange(1), default=None, help="runs per Dagster run"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def run_and_report(sweep_type: str, options: dict) -> dict:
    """Run the sweep with a progress line on stderr; print the job id and its job_metrics."""
    import os

    from bilancio_pipeline.storage.base import StoreError
    from bilancio_pipeline.storage.config import store_from_env
    from bilancio_pipeline.storage.retrying import first_contact

    store = store_from_env()
    try:  # before Dagster loads (seconds): a store that never answers fails fast, in one line
        first_contact(store)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    from bilancio_pipeline.defs.inprocess import SweepFailed, run_sweep
    from bilancio_pipeline.defs.instance import get_instance

    instance = get_instance()
    from bilancio_pipeline.definitions import build_definitions

    defs = build_definitions()
    batch_size = options.pop("batch_size", None)
    executor = options.pop("executor", None) or os.environ.get("BILANCIO_EXECUTOR") or "local"
    config = {"sweep_type": sweep_type, "executor": executor,
              **{k: v for k, v in options.items() if v is not None}}  # an unset --regime: the spec's default

    from bilancio_pipeline.defs.config import SweepConfig
    from bilancio_pipeline.defs.jobs import max_runs
    from bilancio_pipeline.sweeps.spec import SpecError, validate

    try:  # every bad field in one line here, not under the launch step's failure log
        validate(SweepConfig(**config).to_spec(), max_runs=max_runs())
    except SpecError as exc:
        raise click.ClickException(str(exc)) from None

    def show(progress):
        click.echo(f"\r{progress.job_id}: {progress.done}/{progress.total} runs done, {progress.failed} failed",
                   err=True, nl=False)

    shown: dict = {}

    def print_job_metrics(progress):  # as soon as they are stored; the report is drawn after
        click.echo("", err=True)
        shown.update(_print_job_metrics(defs, progress))

    try:
        kwargs = {"batch_size": batch_size} if batch_size else {}
        run_sweep(defs, instance, config, on_progress=show, on_aggregated=print_job_metrics, **kwargs)
    except SweepFailed as exc:
        click.echo("", err=True)
        raise click.ClickException(str(exc)) from None
    return shown


def _print_job_metrics(defs, progress) -> dict:
    store = defs.resources["store"].process_config_and_initialize().open()
    try:
        job = store.get_job(progress.job_id)
        metrics = store.get_job_metrics(progress.job_id) or {}
    finally:
        store.close()
    click.echo(f"job_id: {progress.job_id}")
    click.echo(f"status: {job['status']}  runs: {progress.done}/{progress.total} done, {progress.failed} failed")
    if job.get("error"):
        click.echo(f"error: {job['error']}")
    click.echo("job_metrics:")
    for name in SUMMARY_FIELDS:
        value = metrics.get(name)
        click.echo(f"  {name:<26} {value:.6f}" if isinstance(value, float) else f"  {name:<26} {value}")
    return {"job": job, "job_metrics": metrics, "progress": progress}


@click.command("sweep")
@click.argument("sweep_type", type=click.Choice(["balanced", "ring"]))
@sweep_options
def command(sweep_type, **options):
    """Launch a sweep (or resume one with --job-id) and run it to its job_metrics.

    Runs the same Dagster jobs and assets as the UI, in this process, against the configured
    Dagster instance (DAGSTER_HOME, else <BILANCIO_HOME>/dagster) and store.
    """
    outcome = run_and_report(sweep_type, options)
    sys.exit(1 if outcome["job"]["status"] == "failed" else 0)
