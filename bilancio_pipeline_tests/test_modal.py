"""The Modal app and the Modal compute, without the network.

The Modal functions run through `.local()`; `ModalCompute` gets handles whose `.map` and
`.remote` run those same bodies (fixtures/modal_local.py). No Modal token is ever set.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import bilancio_pipeline
from bilancio_pipeline import modal_app
from bilancio_pipeline.compute.base import RunTask
from bilancio_pipeline.compute.modal import ModalCompute, ModalNotReady, RunFailed
from bilancio_pipeline.engine import RunParams
from bilancio_pipeline.engine import run_simulation as engine_run
from bilancio_pipeline_tests.fixtures.modal_local import LocalFunction, local_functions, modal_local  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore:The .* function is executing locally")

SMALL = {"n_agents": 5, "maturity_days": 3}
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_modal_token(monkeypatch):
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        monkeypatch.delenv(name, raising=False)


def task(run_id: str, job_id: str = "calm-lake", **params) -> dict:
    return {"run_id": run_id, "job_id": job_id, "params": RunParams(**{**SMALL, **params}).to_dict()}


# --- the image --------------------------------------------------------------------------


def test_image_pins_are_the_lock_files():
    lock = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            lock[name.strip().lower()] = version.strip()
    pins = modal_app.engine_requirements()
    assert len(pins) == len(modal_app.ENGINE_DISTRIBUTIONS)
    for pin in pins:
        name, version = pin.split("==")
        assert lock[name.lower()] == version


def test_image_lists_every_third_party_import_of_the_engine():
    import_to_distribution = {"yaml": "pyyaml"}
    imported = set()
    for path in (REPO / "bilancio_pipeline" / "engine").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m not in ("bilancio_pipeline", "__future__")}
    assert third_party, "the engine imports numpy/yaml/orjson; an empty set means the scan is broken"
    assert {import_to_distribution.get(m, m) for m in third_party} <= set(modal_app.ENGINE_DISTRIBUTIONS)


def test_engine_requirements_reject_an_unpinned_lock(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("numpy==2.4.6\npyyaml>=6\n")
    with pytest.raises(ValueError, match="pyyaml"):
        modal_app.engine_requirements(lock, ("numpy", "pyyaml"))


def test_app_settings():
    assert modal_app.app.name == "bilancio-pipeline"
    assert modal_app.VOLUME_NAME == "bilancio-results"
    assert modal_app.SECRET_NAMES == ("bilancio-supabase", "bilancio-r2")


# --- the functions, in-process ----------------------------------------------------------


def test_run_simulation_writes_the_run_to_the_volume(tmp_path, monkeypatch):
    monkeypatch.setenv("BILANCIO_MODAL_RESULTS_DIR", str(tmp_path))
    result = modal_app.run_simulation.local(task("calm-lake_passive_aaaaaaaaaaaa", kappa=0.5))

    expected = engine_run(RunParams(**SMALL, kappa=0.5))
    assert result["run_id"] == "calm-lake_passive_aaaaaaaaaaaa"
    assert result["version"] == bilancio_pipeline.__version__
    assert result["summary"]["delta_total"] == expected.summary["delta_total"]
    assert len(result["day_metrics"]) == len(expected.day_metrics)
    assert "scenario_yaml" in result["artifacts"] and "events_jsonl" in result["artifacts"]
    for path in result["artifacts"].values():
        assert path.startswith("calm-lake/runs/calm-lake_passive_aaaaaaaaaaaa/")
        assert (tmp_path / path).is_file()


def test_run_simulation_failure_names_the_run_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("BILANCIO_MODAL_RESULTS_DIR", str(tmp_path))
    bad = {"run_id": "r-bad", "job_id": "calm-lake", "params": {**SMALL, "kappa": -1}}
    with pytest.raises(RunFailed) as caught:
        modal_app.run_simulation.local(bad)
    assert caught.value.run_id == "r-bad"
    assert "kappa" in str(caught.value)
    assert not any(tmp_path.iterdir())


def test_run_simulation_refuses_ids_that_are_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("BILANCIO_MODAL_RESULTS_DIR", str(tmp_path / "vol"))
    with pytest.raises(RunFailed, match="job_id"):
        modal_app.run_simulation.local({"run_id": "r1", "job_id": "../escape", "params": SMALL})
    assert not (tmp_path / "escape").exists()


def test_health_check_reports_the_code_version():
    assert modal_app.health_check.local()["version"] == bilancio_pipeline.__version__


def test_compute_aggregate_metrics_is_the_engines_aggregate(tmp_path, monkeypatch):
    from bilancio_pipeline.engine import aggregate_job_metrics

    monkeypatch.setenv("BILANCIO_MODAL_RESULTS_DIR", str(tmp_path))
    rows = []
    for regime in ("passive", "active"):
        out = modal_app.run_simulation.local(task(f"calm-lake_{regime}_{'b' * 12}", regime=regime, kappa=0.5))
        rows.append({**RunParams(**SMALL, kappa=0.5, regime=regime).to_dict(), **out["summary"], "run_id": out["run_id"]})
    assert modal_app.compute_aggregate_metrics.local(rows) == aggregate_job_metrics(rows)


# --- ModalCompute -----------------------------------------------------------------------


def run_tasks(n: int, job_id: str = "calm-lake") -> list[RunTask]:
    kappas = [0.25, 0.5, 1.0, 2.0, 4.0, 0.75, 1.5]
    return [RunTask(f"{job_id}_passive_{i:012d}", job_id, RunParams(**SMALL, kappa=kappas[i]).to_dict()) for i in range(n)]


def test_a_batch_returns_each_result_or_failure_on_its_own(modal_local):
    tasks = run_tasks(4)
    tasks[2] = RunTask(tasks[2].run_id, tasks[2].job_id, {**tasks[2].params, "mu": 7})  # invalid
    handles = local_functions()
    compute = ModalCompute(functions=handles)

    outcomes = {o.run_id: o for o in compute.run_batch(tasks, artifacts_root="unused")}

    assert set(outcomes) == {t.run_id for t in tasks}
    failed = outcomes[tasks[2].run_id]
    assert not failed.ok and "mu" in failed.error and failed.summary == {}
    for t in (tasks[0], tasks[1], tasks[3]):
        ok = outcomes[t.run_id]
        assert ok.ok and ok.error is None
        assert ok.summary["delta_total"] == engine_run(RunParams.from_dict(t.params)).summary["delta_total"]
        for url in ok.artifacts.values():
            assert url.startswith("modal://bilancio-results/calm-lake/runs/")
            assert (modal_local / url.removeprefix("modal://bilancio-results/")).is_file()
    assert handles["run_simulation"].map_calls == [{"size": 4, "return_exceptions": True, "order_outputs": False}]


def test_a_crashed_worker_fails_only_its_run(modal_local):
    tasks = run_tasks(3)
    crashed = tasks[1].run_id

    def crash(item):
        return ConnectionError("container exited with code 137") if item["run_id"] == crashed else None

    outcomes = {o.run_id: o for o in ModalCompute(functions=local_functions(fail=crash)).run_batch(tasks, "unused")}

    assert not outcomes[crashed].ok
    assert "container exited with code 137" in outcomes[crashed].error
    assert all(outcomes[t.run_id].ok for t in tasks if t.run_id != crashed)


def test_a_map_that_breaks_midway_fails_only_the_unfinished_runs(modal_local):
    tasks = run_tasks(3)
    real = local_functions()["run_simulation"]

    class Disconnecting(LocalFunction):
        def map(self, inputs, **options):
            results = super().map(inputs, **options)
            yield next(results)
            raise ConnectionResetError("connection to Modal lost")

    outcomes = list(ModalCompute(functions={"run_simulation": Disconnecting(real.function)}).run_batch(tasks, "unused"))
    assert sorted(o.run_id for o in outcomes) == sorted(t.run_id for t in tasks)
    assert [o.ok for o in outcomes].count(True) == 1
    assert all("connection to Modal lost" in o.error for o in outcomes if not o.ok)


def test_concurrency_is_bounded_by_chunks(modal_local):
    handles = local_functions()
    outcomes = list(ModalCompute(max_concurrency=2, functions=handles).run_batch(run_tasks(5), "unused"))
    assert len(outcomes) == 5 and all(o.ok for o in outcomes)
    assert [call["size"] for call in handles["run_simulation"].map_calls] == [2, 2, 1]


def test_the_fixture_replaces_the_one_lookup(modal_local):
    compute = ModalCompute()  # as the compute resource opens it for BILANCIO_EXECUTOR=modal
    compute.check()
    assert [o.ok for o in compute.run_batch(run_tasks(1), "unused")] == [True]


def test_check_accepts_the_same_version():
    ModalCompute(functions={"health_check": LocalFunction(modal_app.health_check)}).check()


def test_check_rejects_a_different_deployed_version():
    class OldDeployment:
        def remote(self):
            return {"status": "ok", "version": "0.0.1"}

    with pytest.raises(ModalNotReady, match=r"0\.0\.1.*redeploy.*modal deploy bilancio_pipeline/modal_app.py"):
        ModalCompute(functions={"health_check": OldDeployment()}).check()


def test_check_rejects_the_same_version_with_other_engine_code():
    class StaleDeployment:
        def remote(self):
            return {**modal_app.health_check.local(), "engine_fingerprint": "0123456789abcdef"}

    with pytest.raises(ModalNotReady, match=r"different engine code.*modal deploy"):
        ModalCompute(functions={"health_check": StaleDeployment()}).check()


def test_check_without_a_token_says_how_to_configure_modal():
    # Function.from_name with no token configured fails at once with Modal's AuthError.
    with pytest.raises(ModalNotReady, match=r"not configured.*modal token new.*modal deploy"):
        ModalCompute(app_name="bilancio-pipeline").check()


def test_max_concurrency_must_be_positive():
    with pytest.raises(ValueError, match="max_concurrency"):
        ModalCompute(max_concurrency=0)


# --- a whole sweep through Dagster, on "Modal" --------------------------------------------


def test_a_sweep_materializes_through_modal_with_one_failed_run(tmp_path, monkeypatch):
    import dagster as dg

    from bilancio_pipeline.compute import modal as modal_compute
    from bilancio_pipeline.defs.inprocess import run_sweep
    from bilancio_pipeline.defs.resources import ComputeResource
    from bilancio_pipeline.definitions import build_definitions
    from bilancio_pipeline.storage.config import store_from_env

    for var in ("BILANCIO_SUPABASE_DB_URL", "BILANCIO_SUPABASE_URL", "BILANCIO_SUPABASE_KEY", "BILANCIO_R2_BUCKET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    volume_dir = tmp_path / "modal-volume"
    monkeypatch.setenv("BILANCIO_MODAL_RESULTS_DIR", str(volume_dir))

    def lost_container(item):  # one run's container dies; Modal reports it without its run id
        p = item["params"]
        return ConnectionError("container lost") if (p["regime"], p["kappa"], p["seed"]) == ("active", 1.0, 1) else None

    handles = local_functions(fail=lost_container)
    monkeypatch.setattr(modal_compute, "deployed_function", lambda app_name, name: handles[name])
    spec = {"n_agents": 8, "maturity_days": 4, "kappas": [0.5, 1.0], "concentrations": [1.0], "mus": [0.5],
            "outside_mid_ratios": [1.0], "seeds": [1, 2], "job_id": "modal-sweep", "executor": "modal"}

    with dg.DagsterInstance.get() as instance:
        progress = run_sweep(build_definitions(compute=ComputeResource(executor="modal")), instance, spec, batch_size=3)
        materialized = instance.get_materialized_partitions(dg.AssetKey("run_metrics"))

    assert (progress.total, progress.failed) == (8, 1)
    store = store_from_env()
    runs = {r["run_id"]: r for r in store.list_runs("modal-sweep")}
    failed = {k for k, r in runs.items() if r["status"] == "failed"}
    assert len(runs) == 8 and len(failed) == 1
    (lost,) = failed
    assert runs[lost]["regime"] == "active" and runs[lost]["kappa"] == 1.0 and runs[lost]["seed"] == 1
    assert "container lost" in runs[lost]["error"]
    assert materialized == set(runs) - failed
    assert sum(call["size"] for call in handles["run_simulation"].map_calls) == 8
    for run_id in set(runs) - failed:
        urls = runs[run_id]["artifact_urls"]
        assert urls and all(u.startswith("modal://bilancio-results/modal-sweep/runs/") for u in urls.values())
        assert all((volume_dir / u.removeprefix("modal://bilancio-results/")).is_file() for u in urls.values())
    store.close()
