"""Task runners for the local pool that misbehave on purpose. They live in their own small module
so forkserver workers can import them by name."""

import os

from bilancio_pipeline.compute.local import run_task

DOOMED_SEED, DOOMED_KAPPA = 7, 1.0  # the active run of this cell takes its worker process down


def die_on_doomed_run(task, artifacts_root):
    """Like the normal runner, but the worker exits abruptly (as on a segfault or an OOM kill)
    when it reaches the doomed run."""
    p = task.params
    if (p["seed"], p["kappa"], p["regime"]) == (DOOMED_SEED, DOOMED_KAPPA, "active"):
        os._exit(1)
    return run_task(task, artifacts_root)
