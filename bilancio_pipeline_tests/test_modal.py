"""The Modal app and the Modal compute, without the network.

The Modal functions run through `.local()`; `ModalCompute` gets handles whose `.map` and
`.remote` run those same bodies and keep Modal's `.map` contract and limits
(fixtures/modal_local.py). R2 is the real S3 server of fixtures/s3.py. No Modal token is ever set.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import sys
from pathlib import Path

import pytest

import bilancio_pipeline
from bilancio_pipeline import modal_app
from bilancio_pipeline.compute import cost, uploads
from bilancio_pipeline.compute.base import RunTask
from bilancio_pipeline.compute.chunks import estimated_seconds, plan_chunks
from bilancio_pipeline.compute.modal import ModalCompute, ModalNotReady, RunFailed
from bilancio_pipeline.engine import RunParams
from bilancio_pipeline.engine import run_simulation as engine_run
from bilancio_pipeline.storage.artifacts.s3 import S3ArtifactStore
from bilancio_pipeline_tests.fixtures.modal_local import (  # noqa: F401
    ContainerCrash, ContractBroken, LocalFunction, local_functions, modal_local)

pytestmark = pytest.mark.filterwarnings("ignore:The .* function is executing locally")

SMALL = {"n_agents": 5, "maturity_days": 3}
REPO = Path(__file__).resolve().parent.parent
R2_VARS = ("BILANCIO_R2_BUCKET", "BILANCIO_R2_ENDPOINT_URL", "BILANCIO_R2_ACCOUNT_ID",
           "BILANCIO_R2_ACCESS_KEY_ID", "BILANCIO_R2_SECRET_ACCESS_KEY")


@pytest.fixture(autouse=True)
def no_modal_token_nor_r2(monkeypatch):
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", *R2_VARS):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def r2_env(monkeypatch, s3_server, s3_bucket):
    """The container's environment with the `bilancio-r2` secret: R2 is the real S3 server."""
    for name, value in (("BILANCIO_R2_BUCKET", s3_bucket), ("BILANCIO_R2_ENDPOINT_URL", s3_server.endpoint_url),
                        ("BILANCIO_R2_ACCESS_KEY_ID", s3_server.access_key),
                        ("BILANCIO_R2_SECRET_ACCESS_KEY", s3_server.secret_key)):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(uploads, "UPLOAD_WAIT_INITIAL", 0.01)
    monkeypatch.setattr(uploads, "UPLOAD_WAIT_MAX", 0.02)
    return S3ArtifactStore(s3_bucket, s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key)


def task(run_id: str, job_id: str = "calm-lake", **params) -> dict:
    return {"run_id": run_id, "job_id": job_id, "params": RunParams(**{**SMALL, **params}).to_dict()}


def run_tasks(n: int, job_id: str = "calm-lake", **params) -> list[RunTask]:
    kappas = [0.25, 0.5, 1.0, 2.0, 4.0, 0.75, 1.5]
    return [RunTask(f"{job_id}_passive_{i:012d}", job_id, RunParams(**{**SMALL, "kappa": kappas[i % 7], **params}).to_dict())
            for i in range(n)]


# --- the image --------------------------------------------------------------------------


def test_image_pins_are_the_lock_files():
    lock = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            lock[name.strip().lower()] = version.strip()
    pins = modal_app.image_requirements()
    assert len(pins) == len(modal_app.IMAGE_DISTRIBUTIONS)
    for pin in pins:
        name, version = pin.split("==")
        assert lock[name.lower()] == version


def test_the_container_code_needs_only_what_the_image_installs(tmp_path):
    """Import the app and run a chunk (volume and R2 store) with every third-party module the
    image does not install blocked: no Dagster, SQLAlchemy, pandas in the containers."""
    allowed = {"numpy", "yaml", "orjson", "boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six",
               "urllib3", "tenacity", "modal", "bilancio_pipeline"}
    script = f"""
import sys, importlib.abc
import modal  # the Modal client is in every Modal image; what it imports is its own business
before = set(sys.modules)
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.split('.')[0]
        if top in {sorted(allowed)!r} or top in sys.stdlib_module_names or top in before:
            return None
        raise ImportError('not in the image: ' + name)
sys.meta_path.insert(0, Block())
import os, warnings
warnings.simplefilter('ignore')
os.environ['BILANCIO_MODAL_RESULTS_DIR'] = {str(tmp_path)!r}
from bilancio_pipeline import modal_app
from bilancio_pipeline.engine import RunParams
out = modal_app.run_simulations.local([{{'run_id': 'r1', 'job_id': 'j', 'params': RunParams(n_agents=5, maturity_days=3).to_dict()}}])
assert out['results'][0]['ok'], out
os.environ.update(BILANCIO_R2_BUCKET='b', BILANCIO_R2_ENDPOINT_URL='http://127.0.0.1:9', BILANCIO_R2_ACCESS_KEY_ID='k',
                  BILANCIO_R2_SECRET_ACCESS_KEY='s')
from bilancio_pipeline.compute.container import r2_from_env
r2_from_env().client
print('ok')
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_image_requirements_reject_an_unpinned_lock(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("numpy==2.4.6\npyyaml>=6\n")
    with pytest.raises(ValueError, match="pyyaml"):
        modal_app.image_requirements(lock, ("numpy", "pyyaml"))


def test_app_settings():
    assert modal_app.app.name == "bilancio-pipeline"
    assert modal_app.VOLUME_NAME == "bilancio-results"
    assert modal_app.SECRET_NAMES == ("bilancio-supabase", "bilancio-r2")


# --- the functions, in-process, without R2: the volume ---------------------------------------


def test_run_simulation_writes_the_run_to_the_volume(tmp_path, monkeypatch):
    monkeypatch.setenv("BILANCIO_MODAL_RESULTS_DIR", str(tmp_path))
    result = modal_app.run_simulation.local(task("calm-lake_passive_aaaaaaaaaaaa", kappa=0.5))

    expected = engine_run(RunParams(**SMALL, kappa=0.5))
    assert result["run_id"] == "calm-lake_passive_aaaaaaaaaaaa"
    assert result["version"] == bilancio_pipeline.__version__
    assert result["summary"]["delta_total"] == expected.summary["delta_total"]
    assert len(result["day_metrics"]) == len(expected.day_metrics)
    base = "modal://bilancio-results/calm-lake/runs/calm-lake_passive_aaaaaaaaaaaa/"
    assert len(result["artifacts"]) >= 5 and "run.html" in result["artifacts"]
    for name, url in result["artifacts"].items():  # plain names; the file as kept, maybe gzipped
        assert url in (base + name, base + name + ".gz")
        assert (tmp_path / url.removeprefix("modal://bilancio-results/")).is_file()


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


def test_a_chunk_runs_each_run_on_its_own_and_reports_its_usage(tmp_path, monkeypatch):
    monkeypatch.setenv("BILANCIO_MODAL_RESULTS_DIR", str(tmp_path))
    chunk = [task("calm-lake_passive_000000000001", kappa=0.5), {"run_id": "r-bad", "job_id": "calm-lake",
             "params": {**SMALL, "mu": 7}}, task("calm-lake_passive_000000000003", kappa=2.0)]
    out = modal_app.run_simulations.local(chunk)

    ok1, bad, ok3 = out["results"]
    assert (ok1["ok"], bad["ok"], ok3["ok"]) == (True, False, True)
    assert "mu" in bad["error"] and "artifacts" not in bad
    assert ok3["summary"]["delta_total"] == engine_run(RunParams(**SMALL, kappa=2.0)).summary["delta_total"]
    usage = out["usage"]
    assert usage["wall_seconds"] > 0 and usage["cpu_seconds"] > 0 and usage["peak_memory_mib"] > 10


def test_health_check_reports_the_code_version_and_where_artifacts_go():
    info = modal_app.health_check.local()
    assert info["version"] == bilancio_pipeline.__version__
    assert info["artifacts"] == {"backend": "modal", "volume": "bilancio-results"}


def test_compute_aggregate_metrics_is_the_engines_aggregate(tmp_path, monkeypatch):
    from bilancio_pipeline.engine import aggregate_job_metrics

    monkeypatch.setenv("BILANCIO_MODAL_RESULTS_DIR", str(tmp_path))
    rows = []
    for regime in ("passive", "active"):
        out = modal_app.run_simulation.local(task(f"calm-lake_{regime}_{'b' * 12}", regime=regime, kappa=0.5))
        rows.append({**RunParams(**SMALL, kappa=0.5, regime=regime).to_dict(), **out["summary"], "run_id": out["run_id"]})
    assert modal_app.compute_aggregate_metrics.local(rows) == aggregate_job_metrics(rows)


# --- the functions with R2 (the container's `bilancio-r2` secret): the real S3 server ----------


def test_run_simulation_with_r2_leaves_the_files_in_the_bucket(tmp_path, monkeypatch, r2_env):
    monkeypatch.setenv("BILANCIO_MODAL_RESULTS_DIR", str(tmp_path / "volume"))
    run_id = "calm-lake_active_cccccccccccc"
    result = modal_app.run_simulation.local(task(run_id, regime="active", kappa=0.5))

    keys = r2_env.list_keys(f"calm-lake/runs/{run_id}")
    assert len(keys) >= 5 and f"calm-lake/runs/{run_id}/run.html" in keys
    # The same names and s3:// URLs a local run's row gets from the same store.
    assert result["artifacts"] == {k.removeprefix(f"calm-lake/runs/{run_id}/"): f"s3://{r2_env.bucket}/{k}" for k in keys}
    assert result["artifacts_error"] is None
    assert not (tmp_path / "volume").exists()  # nothing on the volume, nothing left in scratch space
    assert not list((Path(tempfile.gettempdir()) / "bilancio-runs" / "calm-lake").glob(f"{run_id}*"))
    assert modal_app.health_check.local()["artifacts"] == {"backend": "r2", "bucket": r2_env.bucket,
                                                          "endpoint_url": r2_env.endpoint_url}


def test_a_refused_upload_is_retried_and_a_failing_run_fails_alone_on_r2(monkeypatch, s3_server, r2_env):
    """The container's key is refused by the real server at first (a rotated secret not yet
    live); it is put right after the first refusal, and the retries store everything."""
    attempts: list[tuple[str, str]] = []

    class Rotating(S3ArtifactStore):
        def move_run(self, job_id, run_id, local_dir):
            try:
                urls = super().move_run(job_id, run_id, local_dir)
            except Exception as exc:
                attempts.append((run_id, str(exc)))
                self._secret, self._client = s3_server.secret_key, None  # the right key from now on
                raise
            attempts.append((run_id, "stored"))
            return urls

    store = Rotating(r2_env.bucket, s3_server.endpoint_url, s3_server.access_key, "wrong-" + s3_server.secret_key)
    monkeypatch.setattr(modal_app, "r2_from_env", lambda: store)
    chunk = [task("calm-lake_passive_000000000001", kappa=0.5), {"run_id": "calm-lake_passive_bad",
             "job_id": "calm-lake", "params": {**SMALL, "kappa": -3}}, task("calm-lake_passive_000000000003", kappa=1.0)]

    out = modal_app.run_simulations.local(chunk)

    first, bad, third = out["results"]
    assert not bad["ok"] and "kappa" in bad["error"] and not r2_env.list_keys("calm-lake/runs/calm-lake_passive_bad")
    for result in (first, third):
        assert result["ok"] and result["artifacts_error"] is None
        assert sorted(r2_env.list_keys(f"calm-lake/runs/{result['run_id']}")) == sorted(
            f"calm-lake/runs/{result['run_id']}/{name}" for name in result["artifacts"])
    refused = [why for _, why in attempts if why != "stored"]
    assert refused and all("SignatureDoesNotMatch" in why or "AccessDenied" in why for why in refused)
    assert [run for run, why in attempts if why == "stored"].count(first["run_id"]) == 1


def test_an_upload_refused_every_time_keeps_the_metrics_and_says_so(monkeypatch, s3_server, r2_env):
    monkeypatch.setenv("BILANCIO_R2_SECRET_ACCESS_KEY", "wrong-" + s3_server.secret_key)
    out = modal_app.run_simulations.local([task("calm-lake_passive_000000000001", kappa=0.5)])
    (result,) = out["results"]
    assert result["ok"] and result["summary"]["delta_total"] is not None
    assert f"not stored after {uploads.UPLOAD_ATTEMPTS} attempts" in result["artifacts_error"]
    assert "r2: could not upload" in result["artifacts_error"] and s3_server.secret_key not in result["artifacts_error"]
    assert not r2_env.list_keys("calm-lake")


def test_a_container_crash_mid_chunk_fails_only_the_run_that_kills_it(monkeypatch, r2_env):
    """One input holds 4 runs; the third kills its container (after the first two were stored).
    The 4 runs are re-sent one per input: the culprit alone ends failed, the rest on R2."""
    from bilancio_pipeline import engine

    real = engine.run_simulation

    def deadly(params, **kwargs):
        if params.kappa == 1.0:
            raise ContainerCrash("out of memory: killed")
        return real(params, **kwargs)

    monkeypatch.setattr(engine, "run_simulation", deadly)
    handles = local_functions()
    tasks = run_tasks(4)  # kappas 0.25, 0.5, 1.0, 2.0
    compute = ModalCompute(functions=handles, input_seconds=600)

    outcomes = {o.run_id: o for o in compute.run_batch(tasks)}

    culprit = tasks[2].run_id
    assert not outcomes[culprit].ok and "died" in outcomes[culprit].error and "out of memory" in outcomes[culprit].error
    for t in tasks:
        if t.run_id != culprit:
            o = outcomes[t.run_id]
            assert o.ok and o.artifacts and all(u.startswith(f"s3://{r2_env.bucket}/calm-lake/runs/{t.run_id}/") for u in o.artifacts.values())
            assert r2_env.list_keys(f"calm-lake/runs/{t.run_id}")
    calls = handles["run_simulations"].map_calls
    assert [c["size"] for c in calls] == [1, 4]  # one input of 4 runs, then 4 inputs of one
    assert all(c["return_exceptions"] and c["order_outputs"] for c in calls)
    assert compute.usage.inputs == 5 and compute.usage.runs == 8


# --- ModalCompute: chunks, limits, quota, usage -------------------------------------------------


def test_runs_are_packed_into_inputs_of_seconds_by_estimated_cost():
    passive = [{"n_agents": 50, "maturity_days": 10, "regime": "passive"}] * 4000
    active = [{"n_agents": 50, "maturity_days": 10, "regime": "active"}] * 4000
    assert estimated_seconds(active[0]) > 3 * estimated_seconds(passive[0])
    for params in (passive, active):
        chunks = plan_chunks(params, lambda p: p, parallelism=100)
        seconds = [sum(estimated_seconds(p) for p in c) for c in chunks]
        assert sum(len(c) for c in chunks) == 4000
        assert all(0.95 <= s <= 4.0 for s in seconds[:-1])  # full to within one run of the target
    big = [{"n_agents": 5000, "maturity_days": 100, "regime": "active"}] * 3
    assert [len(c) for c in plan_chunks(big, lambda p: p, parallelism=100)] == [1, 1, 1]


def synthetic_body(chunk):
    """What a container returns for a chunk, without simulating (20,000 runs in a test)."""
    return {"results": [{"run_id": t["run_id"], "ok": True, "summary": {"delta_total": 0.5}, "artifacts": {},
                         "wall_ms": 1.0} for t in chunk],
            "usage": {"wall_seconds": 2.0, "cpu_seconds": 1.5, "peak_memory_mib": 300}}


@pytest.mark.parametrize("max_concurrency, n_agents", [(1000, 2000)])  # 100 and n=50: the stored sweep below
def test_a_20000_run_sweep_goes_through_within_modals_limits(max_concurrency, n_agents):
    handle = LocalFunction(body=synthetic_body, containers=100)
    tasks = [RunTask(f"big-sweep_{regime}_{i:012d}", "big-sweep",
                     {"n_agents": n_agents, "maturity_days": 10, "regime": regime})
             for i in range(10_000) for regime in ("passive", "active")]
    compute = ModalCompute(functions={"run_simulations": handle}, max_concurrency=max_concurrency)

    outcomes = list(compute.run_batch(tasks))

    assert len(outcomes) == 20_000 and all(o.ok for o in outcomes)
    assert {o.run_id for o in outcomes} == {t.run_id for t in tasks}
    assert handle.refused == 0 and handle.peak_open_inputs <= min(max_concurrency, 1000)
    assert all(c["size"] <= max_concurrency and c["return_exceptions"] and c["order_outputs"] for c in handle.map_calls)
    inputs = sum(c["size"] for c in handle.map_calls)
    assert 20 <= inputs < 20_000  # many runs per input
    assert compute.usage.inputs == inputs and compute.usage.runs == 20_000


def test_the_fake_handle_refuses_what_modal_refuses():
    from modal.exception import ResourceExhaustedError

    handle = LocalFunction(body=synthetic_body, containers=10)
    first = handle.map([[{"run_id": "a"}]] * 1000, return_exceptions=True)
    second = handle.map([[{"run_id": "a"}]] * 1000, return_exceptions=True)
    with pytest.raises(ResourceExhaustedError):  # 2,000 in the system, 1,990 waiting: then 2,990
        handle.map([[{"run_id": "a"}]] * 1000, return_exceptions=True)
    with pytest.raises(ContractBroken):
        handle.map([[{"run_id": "a"}]] * 1001, return_exceptions=True)
    with pytest.raises(TypeError):
        handle.map([], return_exceptions=True, ordered=True)
    list(first), list(second)
    assert handle.open_inputs == 0


def test_resource_exhausted_is_waited_out_with_backoff():
    handle = LocalFunction(body=synthetic_body, refuse=3)
    pauses: list[float] = []
    compute = ModalCompute(functions={"run_simulations": handle}, sleep=pauses.append)

    outcomes = list(compute.run_batch(run_tasks(10)))

    assert len(outcomes) == 10 and all(o.ok for o in outcomes)
    assert handle.refused == 3 and len(pauses) == 3
    assert pauses[0] < pauses[2]  # the waits grow


def test_resource_exhausted_for_too_long_fails_the_runs_clearly():
    handle = LocalFunction(body=synthetic_body, refuse=10**6)
    compute = ModalCompute(functions={"run_simulations": handle}, sleep=lambda s: None, quota_retry_seconds=60)

    outcomes = list(compute.run_batch(run_tasks(3)))

    assert len(outcomes) == 3 and not any(o.ok for o in outcomes)
    assert all("Resource Exhausted" in o.error and "re-launch" in o.error for o in outcomes)


def test_a_batch_returns_each_result_or_failure_on_its_own(modal_local):
    tasks = run_tasks(4)
    tasks[2] = RunTask(tasks[2].run_id, tasks[2].job_id, {**tasks[2].params, "mu": 7})  # invalid
    handles = local_functions()
    compute = ModalCompute(functions=handles)

    outcomes = {o.run_id: o for o in compute.run_batch(tasks)}

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
    assert handles["run_simulations"].map_calls == [{"size": 1, "return_exceptions": True, "order_outputs": True}]
    summary = compute.usage_summary()
    assert summary["inputs"] == 1 and summary["runs"] == 4 and summary["cpu_seconds"] > 0
    billed = max(summary["wall_seconds"] * cost.CPU_CORES, summary["cpu_seconds"]) * cost.USD_PER_CORE_SECOND
    assert summary["estimated_cost_usd"] == pytest.approx(
        billed + summary["billed_gib_seconds"] * cost.USD_PER_GIB_SECOND, rel=1e-2, abs=1e-6)


def test_a_map_that_breaks_midway_fails_only_the_unfinished_runs():
    class Disconnecting(LocalFunction):
        def map(self, inputs, **options):
            results = super().map(inputs, **options)
            yield next(results)
            raise ConnectionResetError("connection to Modal lost")

    compute = ModalCompute(functions={"run_simulations": Disconnecting(body=synthetic_body)}, input_seconds=0.001)
    outcomes = list(compute.run_batch(run_tasks(3)))
    assert sorted(o.run_id for o in outcomes) == sorted(t.run_id for t in run_tasks(3))
    assert [o.ok for o in outcomes].count(True) == 1
    assert all("connection to Modal lost" in o.error for o in outcomes if not o.ok)


def test_the_fixture_replaces_the_one_lookup(modal_local):
    compute = ModalCompute()  # as the compute resource opens it for BILANCIO_EXECUTOR=modal
    compute.check()
    assert [o.ok for o in compute.run_batch(run_tasks(1))] == [True]


def test_check_accepts_the_same_version():
    ModalCompute(functions={"health_check": LocalFunction(modal_app.health_check)}).check()


def test_check_refuses_containers_that_store_artifacts_elsewhere(tmp_path, monkeypatch, s3_server):
    from bilancio_pipeline.storage.artifacts.local import LocalArtifactStore

    here_r2 = S3ArtifactStore("results", s3_server.endpoint_url, "k", "s")
    compute = ModalCompute(functions={"health_check": LocalFunction(modal_app.health_check)})
    with pytest.raises(ModalNotReady, match=r"Modal Volume.*R2 bucket 'results'.*bilancio-r2"):
        compute.check(here_r2)  # the containers have no R2, this side reads from R2
    compute.check(LocalArtifactStore(tmp_path))  # both without R2: the volume, as before
    for name, value in (("BILANCIO_R2_BUCKET", "results"), ("BILANCIO_R2_ENDPOINT_URL", s3_server.endpoint_url),
                        ("BILANCIO_R2_ACCESS_KEY_ID", "k"), ("BILANCIO_R2_SECRET_ACCESS_KEY", "s")):
        monkeypatch.setenv(name, value)
    compute.check(here_r2)
    with pytest.raises(ModalNotReady, match=r"R2 bucket 'results'.*R2 bucket 'other'"):
        compute.check(S3ArtifactStore("other", s3_server.endpoint_url, "k", "s"))


def test_check_rejects_a_different_deployed_version():
    class OldDeployment:
        def remote(self):
            return {"status": "ok", "version": "0.0.1"}

    with pytest.raises(ModalNotReady, match=r"0\.0\.1.*redeploy.*modal deploy bilancio_pipeline/modal_app.py"):
        ModalCompute(functions={"health_check": OldDeployment()}).check()


def test_check_rejects_the_same_version_with_other_container_code():
    class StaleDeployment:
        def remote(self):
            return {**modal_app.health_check.local(), "engine_fingerprint": "0123456789abcdef"}

    with pytest.raises(ModalNotReady, match=r"different engine or container code.*modal deploy"):
        ModalCompute(functions={"health_check": StaleDeployment()}).check()


def test_check_without_a_token_says_how_to_configure_modal():
    # Function.from_name with no token configured fails at once with Modal's AuthError.
    with pytest.raises(ModalNotReady, match=r"not configured.*modal token new.*modal deploy"):
        ModalCompute(app_name="bilancio-pipeline").check()


@pytest.mark.parametrize("bad", [0, 1001, True, 2.5])
def test_max_concurrency_is_within_modals_map_limit(bad):
    with pytest.raises(ValueError, match="max_concurrency.*1 to 1000"):
        ModalCompute(max_concurrency=bad)


# --- every parameter that names a run reaches the engine -------------------------------------


@pytest.fixture
def sqlite_store(tmp_path):
    from bilancio_pipeline.storage.config import open_store

    store = open_store(home=tmp_path)
    yield store
    store.close()


def _compute(executor: str):
    from bilancio_pipeline.compute.local import LocalCompute

    return LocalCompute(workers=1) if executor == "local" else ModalCompute(functions=local_functions())


@pytest.mark.parametrize("executor", ["local", "modal"])
def test_a_changed_q_total_reaches_the_engine_and_changes_the_result(executor, tmp_path, modal_local, sqlite_store):
    from bilancio_pipeline.storage.artifacts.local import LocalArtifactStore
    from bilancio_pipeline.sweeps.batch import run_batch
    from bilancio_pipeline.sweeps.lifecycle import register_sweep
    from bilancio_pipeline.sweeps.spec import SweepSpec, expand, validate

    deltas = {}
    for q_total in (10_000.0, 300.0):
        spec = validate(SweepSpec(sweep_type="ring", regime="active", n_agents=8, maturity_days=4, kappas=(0.5,),
                                  job_id=f"q-total-{int(q_total)}", executor=executor, extra={"q_total": q_total}))
        (planned,) = expand(spec)
        register_sweep(sqlite_store, spec, [planned])
        batch = run_batch(sqlite_store, LocalArtifactStore(tmp_path / "volume"), _compute(executor), [planned.run_id])
        (metrics,) = batch.metrics
        assert metrics["delta_total"] == engine_run(planned.params).summary["delta_total"]
        deltas[q_total] = metrics["delta_total"]
    assert deltas[10_000.0] != deltas[300.0]


def test_a_run_whose_stored_parameters_no_longer_name_it_is_not_run(tmp_path, sqlite_store):
    from bilancio_pipeline.storage.artifacts.local import LocalArtifactStore
    from bilancio_pipeline.sweeps.batch import run_batch
    from bilancio_pipeline.sweeps.lifecycle import register_sweep
    from bilancio_pipeline.sweeps.spec import SweepSpec, expand, validate

    spec = validate(SweepSpec(sweep_type="ring", n_agents=8, maturity_days=4, kappas=(0.5,), job_id="tampered"))
    (planned,) = expand(spec)
    register_sweep(sqlite_store, spec, [planned])
    sqlite_store.upsert_runs([{"run_id": planned.run_id, "job_id": "tampered", "kappa": 0.75}])

    batch = run_batch(sqlite_store, LocalArtifactStore(tmp_path / "volume"), _compute("local"), [planned.run_id])

    assert not batch.metrics and "do not give back its run id" in batch.failed[planned.run_id]


# --- a whole sweep through Dagster, on "Modal", artifacts on R2 ------------------------------


def test_a_sweep_through_modal_stores_artifacts_on_r2_and_its_cost(tmp_path, monkeypatch, r2_env):
    import dagster as dg
    import httpx
    from click.testing import CliRunner

    from bilancio_pipeline.cli.main import cli
    from bilancio_pipeline.compute import modal as modal_compute
    from bilancio_pipeline.defs.inprocess import run_sweep
    from bilancio_pipeline.defs.resources import ComputeResource
    from bilancio_pipeline.definitions import build_definitions
    from bilancio_pipeline.storage.artifacts.base import manifest_key
    from bilancio_pipeline.storage.config import store_from_env

    for var in ("BILANCIO_SUPABASE_DB_URL", "BILANCIO_SUPABASE_URL", "BILANCIO_SUPABASE_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    monkeypatch.setenv("BILANCIO_MODAL_RESULTS_DIR", str(tmp_path / "modal-volume"))

    def lost_container(chunk):  # the container holding this run dies, whenever it runs it
        hit = any((t["params"]["regime"], t["params"]["kappa"], t["params"]["seed"]) == ("active", 1.0, 1) for t in chunk)
        return ConnectionError("container lost") if hit else None

    handles = local_functions(fail=lost_container)
    monkeypatch.setattr(modal_compute, "deployed_function", lambda app_name, name: handles[name])
    spec = {"n_agents": 8, "maturity_days": 4, "kappas": [0.5, 1.0], "concentrations": [1.0], "mus": [0.5],
            "outside_mid_ratios": [1.0], "seeds": [1, 2], "job_id": "modal-sweep", "executor": "modal"}
    defs = build_definitions(compute=ComputeResource(executor="modal"))

    with dg.DagsterInstance.get() as instance:
        progress = run_sweep(defs, instance, spec, batch_size=4)
        materialized = instance.get_materialized_partitions(dg.AssetKey("run_metrics"))

    assert (progress.total, progress.failed) == (8, 1)
    store = store_from_env()
    runs = {r["run_id"]: r for r in store.list_runs("modal-sweep")}
    (lost,) = [k for k, r in runs.items() if r["status"] == "failed"]
    assert runs[lost]["regime"] == "active" and runs[lost]["kappa"] == 1.0 and runs[lost]["seed"] == 1
    assert "container lost" in runs[lost]["error"] and "died" in runs[lost]["error"]
    assert materialized == set(runs) - {lost}
    for run_id in set(runs) - {lost}:  # the rows carry the bucket's keys, as a local run's would
        urls = runs[run_id]["artifact_urls"]
        prefix = f"modal-sweep/runs/{run_id}"
        assert runs[run_id]["artifact_base"] == prefix
        assert urls == {k.removeprefix(prefix + "/"): f"s3://{r2_env.bucket}/{k}" for k in r2_env.list_keys(prefix)}
    assert not (tmp_path / "modal-volume" / "modal-sweep").exists()

    # Where the time and money went: in job_metrics' raw summary and the manifest.
    spent = store.get_job_metrics("modal-sweep")["raw_summary"]["compute"]
    assert spent["executor"] == "modal" and spent["runs"] >= 8 and spent["inputs"] >= 3
    assert spent["cpu_seconds"] > 0 and spent["estimated_cost_usd"] > 0
    assert spent["price"]["usd_per_core_second"] == cost.USD_PER_CORE_SECOND
    manifest = json.loads(r2_env.get_bytes(manifest_key("modal-sweep")))
    assert manifest["job_metrics"]["raw_summary"]["compute"] == spent
    store.close()

    # `artifacts url` presigns an R2 link; `artifacts download` fetches the files.
    runner = CliRunner()
    done = sorted(set(runs) - {lost})[0]
    shown = runner.invoke(cli, ["jobs", "get", "modal-sweep"])
    assert shown.exit_code == 0 and "CPU-seconds" in shown.output and "estimated cost" in shown.output
    link = runner.invoke(cli, ["artifacts", "url", "modal-sweep", done, "run.html"])
    assert link.exit_code == 0, link.output
    assert httpx.get(link.output.strip()).status_code == 200
    got = runner.invoke(cli, ["artifacts", "download", "modal-sweep", "--run", done, "--out", str(tmp_path / "dl")])
    assert got.exit_code == 0, got.output
    assert (tmp_path / "dl" / done / "run.html").is_file() or list((tmp_path / "dl").rglob("run.html"))


def test_without_r2_a_modal_sweep_stays_on_the_volume_and_download_reads_it_there(tmp_path, monkeypatch, modal_local):
    """No BILANCIO_R2_*: the containers keep the files on the Modal Volume (here a folder behind a
    stand-in for `modal.Volume`), and `artifacts download` and `volume ls` read them there."""
    from click.testing import CliRunner

    from bilancio_pipeline.cli.main import cli
    from bilancio_pipeline.maintenance.modal_volume import ModalVolumeStore
    from bilancio_pipeline.storage.artifacts.base import plain_name
    from bilancio_pipeline.storage.artifacts.local import LocalArtifactStore
    from bilancio_pipeline.storage.config import store_from_env
    from bilancio_pipeline.sweeps.batch import run_batch
    from bilancio_pipeline.sweeps.lifecycle import register_sweep
    from bilancio_pipeline.sweeps.spec import SweepSpec, expand, validate
    from bilancio_pipeline_tests.test_cleanup import FakeModalVolume

    for var in ("BILANCIO_SUPABASE_DB_URL", "BILANCIO_SUPABASE_URL", "BILANCIO_SUPABASE_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path / "home"))
    store = store_from_env()
    spec = validate(SweepSpec(sweep_type="ring", n_agents=6, maturity_days=3, kappas=(0.5, 1.0), job_id="on-volume",
                              executor="modal"))
    planned = expand(spec)
    register_sweep(store, spec, planned)
    batch = run_batch(store, LocalArtifactStore(tmp_path / "home" / "volume"), ModalCompute(), [p.run_id for p in planned])
    store.upsert_runs(batch.runs)
    store.upsert_runs(batch.artifacts)
    store.close()
    assert len(batch.completed) == 2 and not (tmp_path / "home" / "volume" / "on-volume").exists()

    class Volume(FakeModalVolume):
        def read_file(self, path):  # as modal.Volume.read_file: FileNotFoundError for a missing file
            if path not in self.files:
                raise FileNotFoundError(path)
            return super().read_file(path)

    fake = Volume()
    fake.files = {p.relative_to(modal_local).as_posix(): (p.read_bytes(), 0) for p in modal_local.rglob("*") if p.is_file()}
    monkeypatch.setattr(ModalVolumeStore, "volume", property(lambda self: fake))
    runner = CliRunner()
    got = runner.invoke(cli, ["artifacts", "download", "on-volume", "--out", str(tmp_path / "dl")])
    assert got.exit_code == 0, got.output
    assert sorted(p.relative_to(tmp_path / "dl").as_posix() for p in (tmp_path / "dl").rglob("*") if p.is_file()) == \
        sorted(plain_name(k.removeprefix("on-volume/"))[0] for k in fake.files)  # plain files, decompressed
    link = runner.invoke(cli, ["artifacts", "url", "on-volume", planned[0].run_id, "run.html"])
    assert link.exit_code == 1 and "Modal Volume has no download URLs" in link.output
    listed = runner.invoke(cli, ["volume", "ls", "--volume", "modal"])
    assert listed.exit_code == 0 and "on-volume" in listed.output


def test_a_20000_run_sweep_is_stored_whole_with_its_modal_cost(sqlite_store, tmp_path):
    """The project's largest sweep as one batch through the fake handle (Modal's limits enforced,
    containers answering without simulating): every run completed, job_metrics with the cost."""
    from bilancio_pipeline.storage.artifacts.local import LocalArtifactStore
    from bilancio_pipeline.sweeps import lifecycle
    from bilancio_pipeline.sweeps.batch import run_batch
    from bilancio_pipeline.sweeps.spec import SweepSpec, expand, validate
    from bilancio_pipeline.sweeps.summary import summarize

    def container(chunk):  # a passive run defaults more often than its active twin
        out = synthetic_body(chunk)
        for r, t in zip(out["results"], chunk):
            r["summary"] = {"delta_total": 0.6 if t["params"]["regime"] == "passive" else 0.4, "phi_total": 0.5}
        return out

    grid = tuple(round(0.1 * i, 1) for i in range(1, 11))
    spec = validate(SweepSpec(n_agents=50, maturity_days=10, kappas=grid, concentrations=grid, mus=tuple(g / 2 for g in grid),
                              seeds=tuple(range(10)), job_id="twenty-thousand", executor="modal"))
    planned = expand(spec)
    assert len(planned) == 20_000
    lifecycle.register_sweep(sqlite_store, spec, planned)
    handle = LocalFunction(body=container, containers=100)

    compute = ModalCompute(functions={"run_simulations": handle, "health_check": LocalFunction(modal_app.health_check)})
    batch = run_batch(sqlite_store, LocalArtifactStore(tmp_path / "volume"), compute,
                      [p.run_id for p in planned])
    sqlite_store.upsert_runs(batch.runs)
    sqlite_store.upsert_metrics(batch.metrics)
    lifecycle.record_progress(sqlite_store, "twenty-thousand", {"compute": batch.usage})

    assert len(batch.completed) == 20_000 and not batch.failed
    counts = sqlite_store.run_counts("twenty-thousand")
    assert counts["completed"] == sum(counts.values()) == 20_000
    assert handle.refused == 0 and max(c["size"] for c in handle.map_calls) <= 100
    row = summarize(sqlite_store, "twenty-thousand").row
    assert row["n_pairs"] == 10_000 and row["mean_trading_effect"] == pytest.approx(0.2)
    spent = row["raw_summary"]["compute"]
    assert spent["runs"] == 20_000 and spent["inputs"] == sum(c["size"] for c in handle.map_calls)
    assert spent["cpu_seconds"] == pytest.approx(1.5 * spent["inputs"])
