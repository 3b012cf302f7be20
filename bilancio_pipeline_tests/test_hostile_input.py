"""Bad and hostile input: every bad sweep spec is refused before anything is written, with a
message naming the field, from the Launchpad (launch_sweep_job) and from the command line; a
property-based test over random specs; a PostgreSQL store with an older schema."""

import math
import re

import dagster as dg
import psycopg2
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bilancio_pipeline.cli.main import cli
from bilancio_pipeline.defs.inprocess import SweepFailed, run_sweep
from bilancio_pipeline.defs.resources import ComputeResource
from bilancio_pipeline.definitions import build_definitions
from bilancio_pipeline.engine.params import RunParams
from bilancio_pipeline.storage.base import StoreError
from bilancio_pipeline.storage.config import bilancio_home, open_store, store_from_env
from bilancio_pipeline.sweeps.spec import JOB_ID_PATTERN, SpecError, SweepSpec, expand, validate

GOOD = {"n_agents": 10, "maturity_days": 5, "kappas": [0.5], "seeds": [1], "job_id": "hostile"}
HOSTILE_JOB_IDS = ["../etc", "a/b", "a\\b", "..", "x; rm -rf /", "x' OR '1'='1", "x'); DROP TABLE jobs;--",
                   "$(whoami)", "`id`", "a\nb", "UPPER", "a--b", "-a", "a" * 65, "a b", "é", "%2e%2e"]

BAD_SPECS = [  # (override, the field the message must name)
    ({"kappas": []}, "kappas"),
    ({"kappas": [math.nan]}, "kappas"),
    ({"kappas": [math.inf]}, "kappas"),
    ({"kappas": [-0.5]}, "kappas"),
    ({"kappas": [0.5, 0.5]}, "kappas"),
    ({"mus": [1.5]}, "mus"),
    ({"mus": [-0.1]}, "mus"),
    ({"concentrations": [0.0]}, "concentrations"),
    ({"outside_mid_ratios": [-1.0]}, "outside_mid_ratios"),
    ({"seeds": [1, 1]}, "seeds"),
    ({"seeds": [-1]}, "seeds"),
    ({"seeds": [2**63]}, "seeds"),
    ({"n_agents": 1}, "n_agents"),
    ({"n_agents": 10**9}, "n_agents"),
    ({"maturity_days": 0}, "maturity_days"),
    ({"maturity_days": 10**7}, "maturity_days"),
    ({"kappas": [i / 100 for i in range(200)], "seeds": list(range(200))}, "kappas"),  # 80,000 runs
    ({"description": "x" * 5000}, "description"),
    # wrong types: the Launchpad's typed form refuses these itself, naming the field
    ({"kappas": "0.5"}, "kappas"),
    ({"seeds": [1.5]}, "seeds"),
    ({"n_agents": "ten"}, "n_agents"),
    ({"sweep_type": "circle"}, "sweep_type"),
    ({"executor": "gpu"}, "executor"),
    *(({"job_id": job_id}, "job_id") for job_id in HOSTILE_JOB_IDS),
]


def _ids(case):
    override, _ = case
    return "-".join(f"{k}={str(v)[:20]}" for k, v in override.items())


@pytest.fixture(scope="module")
def dagster_home(tmp_path_factory):
    """One Dagster home for the command-line cases: none of them may write anything to it."""
    return tmp_path_factory.mktemp("dagster")


@pytest.fixture
def env(tmp_path, monkeypatch, dagster_home):
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    for var in ("BILANCIO_SUPABASE_DB_URL", "BILANCIO_SUPABASE_URL", "BILANCIO_SUPABASE_KEY", "BILANCIO_R2_BUCKET"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def assert_nothing_written(instance):
    assert store_from_env().list_jobs() == []
    assert instance.get_dynamic_partitions("runs") == [] and instance.get_dynamic_partitions("sweeps") == []
    volume = bilancio_home() / "volume"
    assert not volume.exists() or not any(volume.iterdir())


@pytest.mark.parametrize("case", BAD_SPECS, ids=_ids)
def test_launchpad_refuses_bad_spec_naming_the_field(env, case):
    override, field = case
    with dg.DagsterInstance.ephemeral() as instance:
        with pytest.raises(Exception) as refused:  # SweepFailed, or the typed form's config error
            run_sweep(build_definitions(compute=ComputeResource(workers=1)), instance, {**GOOD, **override})
        assert field in str(refused.value)
        assert_nothing_written(instance)


def test_every_bad_field_is_reported_at_once_in_one_line(env):
    bad = {"kappas": [-1], "mus": [0, 1.5], "seeds": [], "n_agents": 1, "job_id": "a/b"}
    with dg.DagsterInstance.ephemeral() as instance:
        with pytest.raises(SweepFailed) as refused:
            run_sweep(build_definitions(compute=ComputeResource(workers=1)), instance, {**GOOD, **bad})
        message = str(refused.value)
        assert message.startswith("invalid sweep spec: ") and "\n" not in message and "Traceback" not in message
        for field in ("n_agents", "kappas", "mus", "seeds", "job_id"):
            assert f"{field}: " in message, message
        assert_nothing_written(instance)


CLI_CASES = [
    (["--kappas", "nan"], "kappas"),
    (["--kappas", ""], "kappas"),
    (["--kappas", "abc"], "--kappas"),
    (["--mus", "2"], "mus"),
    (["--seeds", "1,1"], "seeds"),
    (["--n-agents", "100000000"], "n_agents"),
    (["--kappas", ",".join(str(i / 100) for i in range(200)), "--seeds", ",".join(map(str, range(200)))], "kappas"),
    (["--job-id", "../x"], "job_id"),
    (["--job-id", "x;rm -rf ~"], "job_id"),
    (["--job-id", "x' OR 1=1--"], "job_id"),
]


@pytest.mark.parametrize("args, field", CLI_CASES, ids=lambda v: str(v)[:30] if isinstance(v, list) else v)
def test_cli_refuses_bad_spec_naming_the_field(env, args, field):
    result = CliRunner().invoke(cli, ["sweep", "balanced", "--n-agents", "10", "--maturity-days", "5", *args])
    assert result.exit_code != 0
    assert field in result.output, result.output
    assert "Traceback" not in result.output
    with dg.DagsterInstance.get() as instance:
        assert_nothing_written(instance)


# --- property-based: random specs -------------------------------------------------------------

SPEC_FIELDS = {f for f in SweepSpec.__dataclass_fields__}
_anything = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 2**64), st.booleans(),
                      st.none(), st.text(max_size=3))
_number_lists = st.one_of(st.lists(st.one_of(st.floats(-1, 3), st.integers(-2, 5)), max_size=4),
                          st.lists(_anything, max_size=3), _anything)


def _named_fields(error: SpecError) -> set[str]:
    # "extra.q_total" names the spec field `extra` (and the key inside it)
    return {part.strip().split(".")[0] for name in error.field.split(",") for part in name.split("×")}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kappas=_number_lists, concentrations=_number_lists, mus=_number_lists, outside_mid_ratios=_number_lists,
    seeds=st.one_of(st.lists(st.integers(-3, 2**64), max_size=4), _number_lists),
    n_agents=st.one_of(st.integers(-3, 20_000), _anything), maturity_days=st.one_of(st.integers(-3, 2_000), _anything),
    sweep_type=st.sampled_from(["balanced", "ring", "", "other"]),
    regime=st.sampled_from(["passive", "active", "both"]),
    job_id=st.one_of(st.sampled_from(["", "ok-id", "a1-b2"]), st.text(max_size=12)),
    extra=st.one_of(st.just({}), st.dictionaries(st.sampled_from(["q_total", "kappa", "bogus", "face_value"]),
                                                 _anything, max_size=2)),
)
def test_random_specs_validate_or_name_a_real_field(**fields):
    spec = SweepSpec(**fields)
    try:
        valid = validate(spec, max_runs=64)
    except SpecError as error:
        named = _named_fields(error)
        assert named <= SPEC_FIELDS | {"regimes"}, error
        assert str(error).startswith("invalid sweep spec: ") and "\n" not in str(error)
        assert all(f"{name}: " in str(error) for name, _ in error.problems)
        return
    assert JOB_ID_PATTERN.match(valid.job_id)
    planned = expand(valid)
    assert len(planned) == valid.n_runs <= 64
    assert len({p.run_id for p in planned}) == len(planned)  # distinct run ids
    for p in planned:
        assert isinstance(p.params, RunParams) and p.run_id.startswith(f"{valid.job_id}_{p.params.regime}_")
        assert RunParams.from_dict(p.params.to_dict()) == p.params  # a worker can rebuild it


# --- a store with an older or a newer schema -------------------------------------------------------


def test_older_postgres_schema_is_upgraded_and_a_newer_one_refused_untouched(postgres_url, tmp_path, monkeypatch):
    from bilancio_pipeline.storage import migrations

    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BILANCIO_SUPABASE_DB_URL", postgres_url)
    monkeypatch.setenv("BILANCIO_STORE_RETRY_SECONDS", "5")
    with dg.DagsterInstance.ephemeral() as instance:
        run_sweep(build_definitions(compute=ComputeResource(workers=2)), instance, {**GOOD, "job_id": "before"})
    db = postgres_url.replace("postgresql+psycopg2", "postgresql")

    def sql(statement):
        with psycopg2.connect(db) as conn, conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if cur.description else None

    def snapshot():
        return {table: [r[0] for r in sql(f"SELECT row_to_json(t)::text FROM {table} t ORDER BY 1")]
                for table in ("jobs", "runs", "metrics", "job_events", "job_metrics")}

    # Older: the newest migration is undone (its columns dropped, its record removed).
    newest = migrations.available()[-1]
    added = [re.match(r"alter table (\S+) add column (\w+)", s, re.IGNORECASE) for s in newest.statements()]
    assert added and all(added), "this test undoes a migration that only adds columns"
    for table_column in added:
        sql(f"ALTER TABLE {table_column[1]} DROP COLUMN {table_column[2]}")
    sql(f"DELETE FROM supabase_migrations.schema_migrations WHERE version = '{newest.version}'")
    before = snapshot()
    store = open_store(postgres_url)
    store.upsert_metrics([{"run_id": before_run(before), "job_id": "before", "delta_total": 0.1}])
    store.close()
    assert sql("SELECT max(version) FROM supabase_migrations.schema_migrations") == [(newest.version,)]
    assert len(snapshot()["runs"]) == len(before["runs"]) and len(snapshot()["jobs"]) == len(before["jobs"])

    # Newer: a version this code does not know is recorded.
    sql("INSERT INTO supabase_migrations.schema_migrations (version, name) VALUES ('29991231000000', 'future')")
    before = snapshot()
    store = open_store(postgres_url)
    with pytest.raises(StoreError) as refused:
        store.upsert_metrics([{"run_id": before_run(before), "job_id": "before", "delta_total": 0.2}])
    message = str(refused.value)
    assert "29991231000000" in message and "newer" in message and "\n" not in message
    assert not refused.value.transient  # a schema problem is not retried for minutes
    with dg.DagsterInstance.ephemeral() as instance:
        with pytest.raises(Exception, match="29991231000000"):
            run_sweep(build_definitions(compute=ComputeResource(workers=2)), instance, {**GOOD, "job_id": "after"})
    assert snapshot() == before  # nothing touched: the new sweep was refused before any write


def before_run(snapshot) -> str:
    import json

    return json.loads(snapshot["runs"][0])["run_id"]
