"""Run simulations on Modal: the deployed app's `run_simulations`, fanned out with `.map`.

A batch's runs are packed into inputs of a few seconds each (`chunks.plan_chunks`); each
input runs its runs one by one in a container, which stores their artifacts itself (R2 when
the container has BILANCIO_R2_*, else the Modal Volume). A run that raises fails alone. An
input whose container died (OOM kill, segfault, lost worker) fails as a whole: its runs are
re-sent one per input, so only the run that kills its container ends failed.

Modal's limits (docs: guide/scale, "Limits"; guide/function-invocation-methods) hold by
construction: the inputs go to `.map` in groups of at most `max_concurrency` (≤ 1,000), one
group at a time, so at most 1,000 inputs of a batch are in flight, in one call, or pending.
A `Resource Exhausted` answer (other batches filling the quota) is waited out with backoff.

The deployed functions come from one place, `deployed_function` (through `ModalCompute.lookup`);
passing `functions=` overrides them per instance (tests give handles that run the function
bodies in-process).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from bilancio_pipeline.compute.base import Compute, RunOutcome, RunTask
from bilancio_pipeline.compute.chunks import TARGET_INPUT_SECONDS, plan_chunks
from bilancio_pipeline.compute.cost import Usage

DEPLOY_HINT = "run `modal token new` (or set MODAL_TOKEN_ID/MODAL_TOKEN_SECRET), then `modal deploy bilancio_pipeline/modal_app.py`"

# Modal's documented limits for one function (see the module docstring).
MAP_MAX_IN_FLIGHT = 1_000  # inputs of one .map running at once
CALL_MAX_INPUTS = 25_000  # inputs of one function call (one .map)
MAX_PENDING_INPUTS = 2_000  # inputs waiting for a container
# A batch never has more than max_concurrency inputs in the system (one .map at a time), so
# keeping max_concurrency at or under all three limits keeps the batch under them by construction.
MOST_INPUTS_AT_ONCE = min(MAP_MAX_IN_FLIGHT, CALL_MAX_INPUTS, MAX_PENDING_INPUTS)
QUOTA_WAIT_INITIAL, QUOTA_WAIT_MAX = 1.0, 30.0  # seconds between tries after Resource Exhausted
QUOTA_RETRY_SECONDS = 900.0  # then the batch's unfinished runs fail with the quota error

# What the containers run: a change to any of it needs a redeploy, which `check` enforces.
_CONTAINER_CODE = ("engine/*.py", "compute/container.py", "compute/uploads.py", "compute/modal.py",
                   "compute/cost.py", "modal_app.py", "storage/config.py", "storage/artifacts/*.py")


def deployed_function(app_name: str, name: str) -> Any:
    """The one place deployed functions come from (tests replace it with `.local`-backed handles)."""
    import modal

    return modal.Function.from_name(app_name, name)


def code_fingerprint() -> str:
    """A short hash of the code the containers run: the deployed app and this client must
    agree on it, so a code change that did not bump the version is caught too."""
    import hashlib
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted({p for pattern in _CONTAINER_CODE for p in package.glob(pattern)}):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def is_quota_error(exc: BaseException) -> bool:
    """Modal's `Resource Exhausted` (too many inputs queued or in flight): wait and try again."""
    from modal.exception import ResourceExhaustedError

    return isinstance(exc, ResourceExhaustedError)


class RunFailed(RuntimeError):
    """One simulation failed inside `run_simulation`; carries the run id so the failure can
    be matched to its task. Picklable (args only)."""

    def __init__(self, run_id: str, message: str, call_id: str | None = None):
        super().__init__(run_id, message, call_id)
        self.run_id = run_id
        self.message = message
        self.call_id = call_id

    def __str__(self) -> str:
        return self.message


class ModalNotReady(RuntimeError):
    """Modal cannot be used: not configured, not deployed, a different version deployed, or
    its containers store artifacts somewhere else than this side reads them."""


class ModalCompute(Compute):
    name = "modal"

    def __init__(self, app_name: str = "bilancio-pipeline", max_concurrency: int = 100,
                 functions: Mapping[str, Any] | None = None, input_seconds: float = TARGET_INPUT_SECONDS,
                 quota_retry_seconds: float = QUOTA_RETRY_SECONDS, sleep: Callable[[float], None] = time.sleep):
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) \
                or not 1 <= max_concurrency <= MOST_INPUTS_AT_ONCE:
            raise ValueError(f"invalid max_concurrency={max_concurrency!r} (BILANCIO_MODAL_MAX_CONCURRENCY): must be "
                             f"an integer from 1 to {MOST_INPUTS_AT_ONCE}, Modal's limit of inputs in flight per .map")
        if not input_seconds > 0:
            raise ValueError(f"invalid input_seconds={input_seconds!r}: must be a number > 0")
        self.app_name = app_name
        self.max_concurrency = max_concurrency
        self.input_seconds = input_seconds
        self.quota_retry_seconds = quota_retry_seconds
        self._sleep = sleep
        self._functions: dict[str, Any] = dict(functions or {})
        self.usage = Usage()  # what the last batch spent on Modal

    def lookup(self, name: str) -> Any:
        """The deployed function `name` of the app (lazy: nothing is contacted until it is called)."""
        if name not in self._functions:
            self._functions[name] = deployed_function(self.app_name, name)
        return self._functions[name]

    def check(self, artifacts: Any = None) -> None:
        from bilancio_pipeline import __version__

        try:
            info = self.lookup("health_check").remote()
        except Exception as exc:
            raise ModalNotReady(_not_ready_message(self.app_name, exc)) from None
        info = info or {}
        deployed = info.get("version")
        if deployed != __version__:
            raise ModalNotReady(
                f"the Modal app {self.app_name!r} runs bilancio_pipeline {deployed}, this code is {__version__}: "
                "redeploy it with `modal deploy bilancio_pipeline/modal_app.py`"
            )
        if info.get("engine_fingerprint") != code_fingerprint():
            raise ModalNotReady(
                f"the Modal app {self.app_name!r} runs different engine or container code than this checkout (same "
                f"version {__version__}): redeploy it with `modal deploy bilancio_pipeline/modal_app.py`"
            )
        if artifacts is not None:
            _check_same_artifacts(self.app_name, info.get("artifacts") or {}, artifacts)

    def usage_summary(self) -> dict[str, Any] | None:
        return self.usage.summary() if self.usage.inputs else None

    def run_batch(self, tasks: Sequence[RunTask], artifacts_root: str | None = None) -> Iterator[RunOutcome]:
        """Yield one outcome per task as results arrive. `artifacts_root` is not used: the
        containers store the artifacts and each outcome carries their URLs."""
        self.usage = Usage()
        function = self.lookup("run_simulations")
        chunks = plan_chunks(list(tasks), lambda t: t.params, self.max_concurrency, self.input_seconds)
        died: list[tuple[RunTask, str]] = []
        yield from self._fan_out(function, chunks, died)
        if died:  # re-send each run of a dead container on its own, to find the one that kills it
            again: list[tuple[RunTask, str]] = []
            yield from self._fan_out(function, [[t] for t, _ in died], again)
            for task, why in again:
                yield RunOutcome(run_id=task.run_id, ok=False,
                                 error=f"the Modal container running this simulation died (also when re-run on its own): {why}")

    def _fan_out(self, function: Any, chunks: list[list[RunTask]], died: list[tuple[RunTask, str]]) -> Iterator[RunOutcome]:
        """Send the chunks in groups of at most max_concurrency inputs, one .map at a time.
        The runs of inputs that died go to `died`, with the reason."""
        for start in range(0, len(chunks), self.max_concurrency):
            yield from self._map_group(function, chunks[start : start + self.max_concurrency], died)

    def _map_group(self, function: Any, group: list[list[RunTask]], died: list[tuple[RunTask, str]]) -> Iterator[RunOutcome]:
        todo = list(group)
        waited, wait = 0.0, QUOTA_WAIT_INITIAL
        while todo:
            payload = [[{"run_id": t.run_id, "job_id": t.job_id, "params": dict(t.params),
                         "artifact_policy": t.artifact_policy} for t in chunk] for chunk in todo]
            refused: list[list[RunTask]] = []
            reported = 0
            try:
                # Ordered outputs: the i-th output is the i-th chunk's, so a dead input is known.
                for chunk, output in zip(todo, function.map(payload, return_exceptions=True, order_outputs=True)):
                    reported += 1
                    if isinstance(output, BaseException):
                        self.usage.add_input(None, len(chunk))
                        if is_quota_error(output):
                            refused.append(chunk)
                        else:
                            died.extend((t, _describe(output)) for t in chunk)
                        continue
                    self.usage.add_input(output.get("usage"), len(chunk))
                    yield from _outcomes(chunk, output)
            except Exception as exc:  # the map itself broke
                if not is_quota_error(exc):  # e.g. the connection to Modal was lost
                    yield from _all_failed(todo[reported:], f"Modal map failed: {_describe(exc)}")
                    return
                refused.extend(todo[reported:])
            todo = refused
            if todo and waited >= self.quota_retry_seconds:
                yield from _all_failed(todo, f"Modal kept answering Resource Exhausted for {waited:.0f} s; re-launch to retry")
                return
            if todo:
                pause = min(wait, QUOTA_WAIT_MAX) * (0.5 + random.random() / 2)
                self._sleep(pause)
                waited += pause
                wait *= 2


def _all_failed(chunks: list[list[RunTask]], error: str) -> Iterator[RunOutcome]:
    for chunk in chunks:
        for task in chunk:
            yield RunOutcome(run_id=task.run_id, ok=False, error=error)


def _outcomes(chunk: list[RunTask], output: Mapping[str, Any]) -> Iterator[RunOutcome]:
    """One outcome per run of a chunk, from the container's results (matched by run id)."""
    results = {r.get("run_id"): r for r in output.get("results") or []}
    for task in chunk:
        r = results.get(task.run_id)
        if r is None:
            yield RunOutcome(run_id=task.run_id, ok=False, error="Modal returned no result for this run",
                             call_id=output.get("call_id"))
        elif not r.get("ok"):
            yield RunOutcome(run_id=task.run_id, ok=False, error=r.get("error") or "failed without an error message",
                             wall_ms=float(r.get("wall_ms") or 0.0), call_id=r.get("call_id"))
        else:
            yield RunOutcome(
                run_id=task.run_id,
                ok=True,
                summary=dict(r.get("summary") or {}),
                day_metrics=list(r.get("day_metrics") or []),
                artifacts=dict(r.get("artifacts") or {}),
                artifacts_error=r.get("artifacts_error"),
                wall_ms=float(r.get("wall_ms") or 0.0),
                call_id=r.get("call_id"),
            )


def _where(place: Mapping[str, Any] | None) -> str:
    return f"R2 bucket {place['bucket']!r} at {place['endpoint_url']}" if place else "the Modal Volume (no R2 configured)"


def _check_same_artifacts(app_name: str, deployed: Mapping[str, Any], artifacts: Any) -> None:
    """The containers must store artifacts where this side reads them, or `artifacts url` and
    `artifacts download` would look in the wrong place."""
    here = ({"bucket": artifacts.bucket, "endpoint_url": artifacts.endpoint_url}
            if getattr(artifacts, "backend", None) == "r2" else None)
    there = ({"bucket": deployed.get("bucket"), "endpoint_url": deployed.get("endpoint_url")}
             if deployed.get("backend") == "r2" else None)
    if here != there:
        raise ModalNotReady(
            f"the Modal app {app_name!r} stores run artifacts in {_where(there)}, but this pipeline reads them from "
            f"{_where(here)}: give the `bilancio-r2` Modal secret the same BILANCIO_R2_* values as here (or set "
            "them in neither place), then redeploy"
        )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _not_ready_message(app_name: str, exc: Exception) -> str:
    try:
        from modal.exception import AuthError, NotFoundError
    except ImportError:  # pragma: no cover - modal is a pinned dependency
        AuthError = NotFoundError = ()  # type: ignore[assignment,misc]
    if isinstance(exc, AuthError) or "token" in str(exc).lower():
        return f"Modal is not configured (no valid token): {DEPLOY_HINT}"
    if isinstance(exc, NotFoundError):
        return f"the Modal app {app_name!r} is not deployed: {DEPLOY_HINT}"
    return f"cannot reach the Modal app {app_name!r} ({_describe(exc)}); {DEPLOY_HINT}"
