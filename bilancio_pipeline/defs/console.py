"""Sweep events on the console of `bilancio-pipeline ui`.

`ui` runs Dagster's services at log level WARNING (no sensor tick every few seconds), runs print
INFO and above (dagster.yaml's python_log_level: a batch's summary line, not a DEBUG line per
partition; the UI's run logs keep every event), and it sets BILANCIO_CONSOLE_EVENTS, so the
processes it starts (daemon, code server, run workers) print the few lines a person watching
the console wants: batches requested, job_metrics requested, dead runs found. Elsewhere these
lines go wherever logging is configured.
"""

import logging
import os
import sys

EVENTS_LOGGER = "bilancio_pipeline.sweeps"
CONSOLE_ENV = "BILANCIO_CONSOLE_EVENTS"


def events() -> logging.Logger:
    logger = logging.getLogger(EVENTS_LOGGER)
    if os.environ.get(CONSOLE_ENV) and not any(getattr(h, "_bilancio", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s - bilancio - %(levelname)s - %(message)s"))
        handler._bilancio = True
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # Dagster's own handlers would print it a second time
    return logger



# The sweep events, one wording whoever makes the hop (a sensor, or a run handing on: handoff.py).
def batches_requested(job_id: str, batches) -> None:
    if batches:
        events().info("sweep %s: %d runs to run, requested as %d batches", job_id,
                      sum(len(b.run_ids) for b in batches), len(batches))


def job_metrics_requested(job_id: str) -> None:
    events().info("sweep %s: every run has ended; job_metrics requested", job_id)
