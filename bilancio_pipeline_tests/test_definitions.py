"""The Dagster definitions load, with nothing configured and with cloud settings, and secrets
set in the environment reach the resources as EnvVars (resolved at run time, never shown)."""

import dagster as dg

from bilancio_pipeline.definitions import build_definitions

CLOUD_ENV = {
    "BILANCIO_SUPABASE_DB_URL": "postgresql://postgres:db-password-123@127.0.0.1:1/postgres",
    "BILANCIO_R2_BUCKET": "results",
    "BILANCIO_R2_ACCOUNT_ID": "acct",
    "BILANCIO_R2_ACCESS_KEY_ID": "access-key-123",
    "BILANCIO_R2_SECRET_ACCESS_KEY": "secret-key-123",
    "BILANCIO_EXECUTOR": "modal",
}


def _clear(monkeypatch):
    for name in CLOUD_ENV:
        monkeypatch.delenv(name, raising=False)


def test_definitions_load_with_nothing_configured(monkeypatch):
    _clear(monkeypatch)
    defs = build_definitions()
    dg.Definitions.validate_loadable(defs)
    assets = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert assets == {"sweep_runs", "run_metrics", "run_artifacts", "job_metrics", "sweep_report"}
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {"launch_sweep_job", "sweep_batch_job", "job_metrics_job", "cleanup_volume_job",
            "supabase_keepalive_job"} <= jobs
    assert {s.name for s in defs.sensors} == {"sweep_batches_sensor", "batch_success_sensor", "sweep_completion_sensor",
                                              "batch_failure_sensor", "batch_canceled_sensor", "dead_run_sensor"}
    assert {s.name for s in defs.schedules} == {"cleanup_volume_schedule", "supabase_keepalive_schedule"}
    store = defs.resources["store"]
    assert store.db_url is None and store.supabase_url is None  # the embedded SQLite default
    assert defs.resources["compute"].executor == "local"


def test_cloud_settings_are_env_vars_not_values(monkeypatch):
    _clear(monkeypatch)
    for name, value in CLOUD_ENV.items():
        monkeypatch.setenv(name, value)
    defs = build_definitions()
    dg.Definitions.validate_loadable(defs)
    store, artifacts = defs.resources["store"], defs.resources["artifacts"]
    assert isinstance(store.db_url, dg.EnvVar) and store.db_url.env_var_name == "BILANCIO_SUPABASE_DB_URL"
    assert isinstance(artifacts.secret_access_key, dg.EnvVar)
    shown = repr(defs.resources) + repr(store) + repr(artifacts)
    assert "db-password-123" not in shown and "secret-key-123" not in shown
    resolved = store.process_config_and_initialize()
    assert resolved.db_url == CLOUD_ENV["BILANCIO_SUPABASE_DB_URL"]
    assert defs.resources["compute"].process_config_and_initialize().executor == "modal"


def test_the_form_and_the_command_line_take_their_defaults_from_the_spec():
    from bilancio_pipeline.cli.sweep import command
    from bilancio_pipeline.defs.config import SweepConfig
    from bilancio_pipeline.sweeps.spec import DEFAULTS, SweepSpec

    form = SweepConfig()
    assert form.to_spec() == SweepSpec()  # the form's defaults are the spec's
    assert form.executor is None and form.regime is None  # empty, not pre-filled with a choice
    cli = command.make_context("sweep", ["balanced"]).params  # the options' values when none is given
    for name in ("n_agents", "maturity_days", "kappas", "concentrations", "mus", "outside_mid_ratios", "seeds",
                 "cash_accounting", "artifact_policy", "description", "job_id"):
        default = getattr(DEFAULTS, name)
        assert cli[name] == (list(default) if isinstance(default, tuple) else default), name
    assert cli["executor"] is None and cli["regime"] is None and cli["recompute"] is False
    assert "VBT" in SweepConfig.model_fields["outside_mid_ratios"].description
