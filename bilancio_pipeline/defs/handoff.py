"""A run hands its sweep on to the next Dagster runs the moment its own work is done.

The daemon's run-status sensors move a sweep along (sensors.py), but the daemon evaluates sensors
every 5 s, so each hop (launch -> batches, last batch -> job_metrics) waited 0-5 s. When
`bilancio-pipeline ui` serves the webserver it tells every run where (WEBSERVER_URL_ENV), and the
runs submit their successors themselves through the webserver's GraphQL API, as the Launchpad
does. The sensors stay the safety net: they skip a launch run that handed its batches on
(HANDED_ON_TAG), never request a run a batch in flight already has, and make the hop whenever
the webserver is not known or did not answer.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import dagster as dg

from bilancio_pipeline.defs import console
from bilancio_pipeline.defs.orchestration import batch_tags, batches_to_request, sweep_busy
from bilancio_pipeline.defs.run_tags import (BATCH_JOB, HANDED_ON_TAG, JOB_ID_TAG, LAUNCHED_BY_TAG, METRICS_JOB,
                                             PARTITION_TAG)
from bilancio_pipeline.storage.base import Store
from bilancio_pipeline.sweeps import orchestrator

WEBSERVER_URL_ENV = "BILANCIO_WEBSERVER_URL"
TIMEOUT_S = 30


def hand_on_batches(context: dg.OpExecutionContext, db: Store, job_id: str) -> None:
    """From a launch run: submit the sweep's batches now; the sensor does it if this cannot."""
    client = _client(context)
    if client is None:
        return
    batches = batches_to_request(db, context.instance, job_id)
    for batch in batches:
        if not _submit(context, client, BATCH_JOB, batch_tags(batch, job_id)):
            return  # the sensor requests what is left (it skips what is in flight)
    context.instance.add_run_tags(context.run_id, {HANDED_ON_TAG: "true"})
    console.batches_requested(job_id, batches)


def hand_on_job_metrics(context: dg.AssetExecutionContext, db: Store, job_id: str) -> None:
    """From a batch: if it was the sweep's last (every run ended, no other batch in flight),
    submit its job_metrics now; the run-status sensor does it if this cannot."""
    client = _client(context)
    if client is None or context.run.tags.get(JOB_ID_TAG) != job_id:  # as the sensor: a sweep's own batches
        return
    if orchestrator.metrics_due(db, job_id, sweep_busy(context.instance, job_id, besides=context.run_id)):
        if _submit(context, client, METRICS_JOB, {PARTITION_TAG: job_id}):
            console.job_metrics_requested(job_id)


def _client(context):
    """The webserver's client, for a run the daemon drives (not the command line's in-process runs)."""
    url = os.environ.get(WEBSERVER_URL_ENV)
    if not url or context.run.tags.get(LAUNCHED_BY_TAG) == "cli" or context.run.remote_job_origin is None:
        return None
    from dagster_graphql import DagsterGraphQLClient  # half a second of imports: only where used

    parts = urlsplit(url)
    return DagsterGraphQLClient(parts.hostname or "127.0.0.1", port_number=parts.port,
                                use_https=parts.scheme == "https", timeout=TIMEOUT_S)


def _submit(context, client, job_name: str, tags: dict[str, str]) -> bool:
    import requests
    from dagster_graphql import DagsterGraphQLClientError

    origin = context.run.remote_job_origin  # the successors live in this run's code location
    try:
        client.submit_job_execution(job_name, repository_location_name=origin.location_name,
                                    repository_name=origin.repository_origin.repository_name, tags=tags)
    except (DagsterGraphQLClientError, requests.RequestException) as exc:
        context.log.warning(f"could not submit {job_name} through the webserver ({type(exc).__name__}: "
                            f"{str(exc)[:200]}); the daemon's sensor will")
        return False
    return True
