"""Run simulations on Modal: the deployed app's `run_simulation`, fanned out with `.map`.

The deployed functions come from one place, `deployed_function` (through `ModalCompute.lookup`);
passing `functions=` overrides them per instance (tests give handles that run the function
bodies in-process).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from bilancio_pipeline.compute.base import Compute, RunOutcome, RunTask

DEPLOY_HINT = "run `modal token new` (or set MODAL_TOKEN_ID/MODAL_TOKEN_SECRET), then `modal deploy bilancio_pipeline/modal_app.py`"


def deployed_function(app_name: str, name: str) -> Any:
    """The one place deployed functions come from (tests replace it with `.local`-backed handles)."""
    import modal

    return modal.Function.from_name(app_name, name)


def code_fingerprint() -> str:
    """A short hash of the engine's source: the deployed app and this client must agree on it,
    so a code change that did not bump the version is caught too."""
    import hashlib
    from pathlib import Path

    engine = Path(__file__).resolve().parent.parent / "engine"
    digest = hashlib.sha256()
    for path in sorted(engine.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


class RunFailed(RuntimeError):
    """One simulation failed inside its Modal function; carries the run id so the failure can
    be matched to its task when results arrive out of order. Picklable (args only)."""

    def __init__(self, run_id: str, message: str, call_id: str | None = None):
        super().__init__(run_id, message, call_id)
        self.run_id = run_id
        self.message = message
        self.call_id = call_id

    def __str__(self) -> str:
        return self.message


class ModalNotReady(RuntimeError):
    """Modal cannot be used: not configured, not deployed, or a different version deployed."""


class ModalCompute(Compute):
    name = "modal"

    def __init__(self, app_name: str = "bilancio-pipeline", max_concurrency: int = 100, functions: Mapping[str, Any] | None = None):
        if max_concurrency < 1:
            raise ValueError(f"invalid max_concurrency={max_concurrency!r}: must be an integer >= 1")
        self.app_name = app_name
        self.max_concurrency = max_concurrency
        self._functions: dict[str, Any] = dict(functions or {})

    def lookup(self, name: str) -> Any:
        """The deployed function `name` of the app (lazy: nothing is contacted until it is called)."""
        if name not in self._functions:
            self._functions[name] = deployed_function(self.app_name, name)
        return self._functions[name]

    def check(self) -> None:
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
                f"the Modal app {self.app_name!r} runs different engine code than this checkout (same version "
                f"{__version__}): redeploy it with `modal deploy bilancio_pipeline/modal_app.py`"
            )

    def run_batch(self, tasks: Sequence[RunTask], artifacts_root: str) -> Iterator[RunOutcome]:
        """Yield one outcome per task as results arrive. At most `max_concurrency` inputs are in
        flight: the tasks go to `.map` in chunks of that size. `artifacts_root` is not used:
        the artifacts stay on the Modal Volume and each outcome names them there."""
        run_simulation = self.lookup("run_simulation")
        for start in range(0, len(tasks), self.max_concurrency):
            chunk = list(tasks[start : start + self.max_concurrency])
            yield from self._run_chunk(run_simulation, chunk)

    def _run_chunk(self, run_simulation: Any, chunk: list[RunTask]) -> Iterator[RunOutcome]:
        payload = [{"run_id": t.run_id, "job_id": t.job_id, "params": dict(t.params)} for t in chunk]
        pending = [t.run_id for t in chunk]
        unattributed: list[BaseException] = []  # worker failures that do not name their run
        try:
            for result in run_simulation.map(payload, return_exceptions=True, order_outputs=False):
                outcome = _outcome(result, pending)
                if outcome is None:
                    unattributed.append(result)
                    continue
                pending.remove(outcome.run_id)
                yield outcome
        except Exception as exc:  # the map itself broke (connection lost): every unfinished run fails
            unattributed.extend([exc] * len(pending))
        # Each input yields exactly one output, so the failures that carry no run id belong to
        # the runs still pending (Modal does not say which is which; the message is kept).
        for run_id, exc in zip(list(pending), unattributed, strict=False):
            pending.remove(run_id)
            yield RunOutcome(run_id=run_id, ok=False, error=f"Modal worker failed: {_describe(exc)}")
        for run_id in pending:
            yield RunOutcome(run_id=run_id, ok=False, error="Modal returned no result for this run")


def _outcome(result: Any, pending: list[str]) -> RunOutcome | None:
    if isinstance(result, RunFailed) and result.run_id in pending:
        return RunOutcome(run_id=result.run_id, ok=False, error=result.message, call_id=result.call_id)
    if isinstance(result, dict) and result.get("run_id") in pending:
        volume = result.get("volume") or "results"
        return RunOutcome(
            run_id=result["run_id"],
            ok=True,
            summary=dict(result.get("summary") or {}),
            day_metrics=list(result.get("day_metrics") or []),
            artifacts={name: f"modal://{volume}/{path}" for name, path in (result.get("artifacts") or {}).items()},
            wall_ms=float(result.get("wall_ms") or 0.0),
            call_id=result.get("call_id"),
        )
    return None


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
