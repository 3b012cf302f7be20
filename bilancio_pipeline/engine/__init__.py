"""The Kalecki-ring engine (MODEL.md): pure Python/NumPy, no Dagster, no I/O beyond writing one
run's artifacts into a folder it is given.

    from bilancio_pipeline.engine import RunParams, run_simulation, aggregate_job_metrics
    result = run_simulation(RunParams(kappa=0.5, regime="active"), out_dir=Path("out/run"))
    result.summary["delta_total"]
"""

from bilancio_pipeline.engine.params import CASH_ACCOUNTINGS, REGIMES, InvalidParameter, RunParams

__all__ = ["CASH_ACCOUNTINGS", "REGIMES", "InvalidParameter", "RunParams", "RunResult", "run_simulation", "aggregate_job_metrics"]


def __getattr__(name):  # the heavier modules load on first use
    if name in ("run_simulation", "RunResult"):
        from bilancio_pipeline.engine import run

        return getattr(run, name)
    if name == "aggregate_job_metrics":
        from bilancio_pipeline.engine.aggregate import aggregate_job_metrics

        return aggregate_job_metrics
    raise AttributeError(name)
