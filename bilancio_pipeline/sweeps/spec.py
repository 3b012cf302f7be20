"""A sweep: its spec, validated before anything is written, and the runs it expands to.

Run ids are deterministic: the same spec under the same job id always gives the same ids, so a
re-launched sweep finds its finished runs and skips them. They start with the job id, so one
sweep's `runs` partitions sort together.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from bilancio_pipeline.engine.artifacts import ARTIFACT_POLICIES
from bilancio_pipeline.engine.params import CASH_ACCOUNTINGS, InvalidParameter, RunParams

SWEEP_TYPES = ("balanced", "ring")
DEFAULT_MAX_RUNS = 20_000
JOB_ID_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
JOB_ID_MAX_LENGTH = 64
# Beyond these a single run would exhaust memory or time (or the seed its bigint column).
MAX_N_AGENTS = 10_000
MAX_MATURITY_DAYS = 1_000
MAX_SEED = 2**63 - 1


class SpecError(ValueError):
    """The sweep spec is invalid; the message names the field."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(f"invalid sweep spec: {field_name}: {message}")


@dataclass(frozen=True)
class SweepSpec:
    sweep_type: str = "balanced"
    n_agents: int = 50
    maturity_days: int = 10
    kappas: tuple[float, ...] = (0.5, 1.0)
    concentrations: tuple[float, ...] = (1.0,)
    mus: tuple[float, ...] = (0.5,)
    outside_mid_ratios: tuple[float, ...] = (1.0,)
    seeds: tuple[int, ...] = (42,)
    regime: str = "active"  # the one regime of a `ring` sweep; a balanced sweep runs both
    cash_accounting: str = "conserving"
    description: str = ""
    job_id: str = ""
    executor: str = "local"
    artifact_policy: str = "all"  # not a run parameter: it never changes a run id
    extra: dict[str, Any] = field(default_factory=dict)  # further RunParams fields, e.g. q_total

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("kappas", "concentrations", "mus", "outside_mid_ratios", "seeds"):
            data[name] = list(data[name])
        return data

    @property
    def regimes(self) -> tuple[str, ...]:
        return ("passive", "active") if self.sweep_type == "balanced" else (self.regime,)

    @property
    def n_runs(self) -> int:
        sizes = (self.kappas, self.concentrations, self.mus, self.outside_mid_ratios, self.seeds, self.regimes)
        return math.prod(len(s) for s in sizes)


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    params: RunParams


def validate_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not job_id:
        raise SpecError("job_id", "must be a non-empty string")
    if len(job_id) > JOB_ID_MAX_LENGTH or not JOB_ID_PATTERN.match(job_id):
        raise SpecError(
            "job_id",
            f"{job_id[:80]!r} must be lowercase letters and digits in words joined by single hyphens "
            f"(like castle-river-mountain), at most {JOB_ID_MAX_LENGTH} characters",
        )
    return job_id


def new_job_id() -> str:
    """A readable unique id of words, like `castle-river-mountain`."""
    from coolname import generate_slug

    return validate_job_id(generate_slug(3))


def _as_list(field_name: str, values: Any, kind: type) -> list:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise SpecError(field_name, f"must be a list of {'integers' if kind is int else 'numbers'}, got {values!r}")
    out = []
    for v in values:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if kind is int:
            ok = ok and float(v).is_integer()
        if not ok or (isinstance(v, float) and not math.isfinite(v)):
            raise SpecError(field_name, f"{v!r} is not a finite {'integer' if kind is int else 'number'}")
        out.append(kind(v))
    if not out:
        raise SpecError(field_name, "must not be empty")
    if len(set(out)) != len(out):
        dupes = sorted({v for v in out if out.count(v) > 1})
        raise SpecError(field_name, f"has duplicate values {dupes}")
    return out


def validate(spec: SweepSpec, max_runs: int = DEFAULT_MAX_RUNS) -> SweepSpec:
    """Check every field and return a normalised spec (lists as tuples, job id filled in)."""
    if spec.sweep_type not in SWEEP_TYPES:
        raise SpecError("sweep_type", f"{spec.sweep_type!r} must be one of {', '.join(SWEEP_TYPES)}")
    if spec.cash_accounting not in CASH_ACCOUNTINGS:
        raise SpecError("cash_accounting", f"{spec.cash_accounting!r} must be one of {', '.join(CASH_ACCOUNTINGS)}")
    if spec.executor not in ("local", "modal"):
        raise SpecError("executor", f"{spec.executor!r} must be local or modal")
    if spec.artifact_policy not in ARTIFACT_POLICIES:
        raise SpecError("artifact_policy", f"{spec.artifact_policy!r} must be one of {', '.join(ARTIFACT_POLICIES)}")
    lists = {
        "kappas": _as_list("kappas", spec.kappas, float),
        "concentrations": _as_list("concentrations", spec.concentrations, float),
        "mus": _as_list("mus", spec.mus, float),
        "outside_mid_ratios": _as_list("outside_mid_ratios", spec.outside_mid_ratios, float),
        "seeds": _as_list("seeds", spec.seeds, int),
    }
    for name, high in (("n_agents", MAX_N_AGENTS), ("maturity_days", MAX_MATURITY_DAYS)):
        value = getattr(spec, name)
        if isinstance(value, int) and not isinstance(value, bool) and value > high:
            raise SpecError(name, f"{value} is over the limit of {high}")
    if any(seed > MAX_SEED for seed in lists["seeds"]):
        raise SpecError("seeds", f"every seed must be at most {MAX_SEED}")
    normalised = SweepSpec(
        **{**asdict(spec), **{k: tuple(v) for k, v in lists.items()}},
    )
    if normalised.n_runs > max_runs:
        raise SpecError("kappas × concentrations × mus × outside_mid_ratios × seeds × regimes",
                        f"the grid has {normalised.n_runs} runs, over the limit of {max_runs}")
    if not isinstance(spec.description, str) or len(spec.description) > 2000:
        raise SpecError("description", "must be text of at most 2000 characters")
    job_id = validate_job_id(spec.job_id) if spec.job_id else new_job_id()
    normalised = SweepSpec(**{**asdict(normalised), "job_id": job_id})
    # Every run's parameters go through RunParams' own checks, so ranges are named once.
    first = next(iter(_param_grid(normalised)))
    _to_run_params(normalised, first)
    for name, values in lists.items():
        for value in values:
            _to_run_params(normalised, {**first, name[:-1] if name != "mus" else "mu": value})
    return normalised


def _param_grid(spec: SweepSpec):
    for kappa, c, mu, rho, seed in itertools.product(
        spec.kappas, spec.concentrations, spec.mus, spec.outside_mid_ratios, spec.seeds
    ):
        for regime in spec.regimes:
            yield {"kappa": kappa, "concentration": c, "mu": mu, "outside_mid_ratio": rho, "seed": seed, "regime": regime}


_LIST_FIELD = {"kappa": "kappas", "concentration": "concentrations", "mu": "mus",
               "outside_mid_ratio": "outside_mid_ratios", "seed": "seeds"}


def _to_run_params(spec: SweepSpec, cell: dict[str, Any]) -> RunParams:
    try:
        return RunParams(
            n_agents=spec.n_agents, maturity_days=spec.maturity_days, cash_accounting=spec.cash_accounting,
            **spec.extra, **cell,
        )
    except InvalidParameter as exc:
        raise SpecError(_LIST_FIELD.get(exc.name, exc.name), f"{exc.value!r} must be {exc.allowed}") from None
    except TypeError as exc:
        raise SpecError("extra", str(exc)) from None


def run_id_for(job_id: str, params: RunParams) -> str:
    """`{job_id}_{regime}_{12 hex}`: the hash covers every parameter, so it is stable and unique."""
    canonical = json.dumps(params.to_dict(), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    return f"{job_id}_{params.regime}_{digest}"


def expand(spec: SweepSpec) -> list[PlannedRun]:
    """Every run of a validated spec, in grid order (passive before active in a pair)."""
    runs = []
    for cell in _param_grid(spec):
        params = _to_run_params(spec, cell)
        runs.append(PlannedRun(run_id_for(spec.job_id, params), params))
    return runs
