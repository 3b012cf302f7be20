"""Sweep events on the console of `bilancio-pipeline ui`.

`ui` runs Dagster's services at log level WARNING (no sensor tick every few seconds) and sets
BILANCIO_CONSOLE_EVENTS, so the processes it starts (daemon, code server, run workers) print
the few lines a person watching the console wants: sweeps launched, batches requested, sweeps
finished, dead runs found. Elsewhere these lines go wherever logging is configured.
"""

import logging
import os
import sys

import dagster as dg

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


@dg.logger(
    {"log_level": dg.Field(str, is_required=False, default_value="INFO"),
     "name": dg.Field(str, is_required=False, default_value="dagster")},
    description="The console logger of every run: INFO and above (a batch's summary line, a sweep's "
                "outcome), not the DEBUG line Dagster would print per partition and asset. The run's "
                "event log in the UI keeps everything.",
)
def run_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    return dg.colored_console_logger.logger_fn(init_context)
