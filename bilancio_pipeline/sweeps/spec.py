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
    """The sweep spec is invalid; the message names every bad field, each with what is wrong."""

    def __init__(self, field_name: str, message: str):
        self.problems = [(field_name, message)]
        self.field = field_name
        super().__init__(f"invalid sweep spec: {field_name}: {message}")

    @classmethod
    def of(cls, problems: list[tuple[str, str]]) -> SpecError:
        """One error for all the problems found, in the order of the form's fields."""
        error = cls(*problems[0])
        error.problems = list(problems)
        error.fields = [name for name, _ in problems]
        error.field = ", ".join(error.fields)
        error.args = ("invalid sweep spec: " + "; ".join(f"{name}: {message}" for name, message in problems),)
        return error


REGIMES = ("passive", "active")
EXECUTORS = ("local", "modal")
# The one place for a sweep's defaults, choices and help: the Launchpad form (defs/config.py) and
# the command line's options (cli/sweep.py) are derived from SweepSpec, CHOICES and HELP.
CHOICES: dict[str, tuple[str, ...]] = {
    "sweep_type": SWEEP_TYPES, "regime": REGIMES, "cash_accounting": CASH_ACCOUNTINGS,
    "executor": EXECUTORS, "artifact_policy": ARTIFACT_POLICIES,
}
HELP = {
    "sweep_type": "balanced: every cell run passive and active with the same seed, compared in job_metrics; "
                  "ring: one regime",
    "n_agents": "traders in the ring (2 to 10,000)",
    "maturity_days": "horizon over which due days are spread (1 to 1,000)",
    "kappas": "κ, liquidity ratios L0/S1 (>= 0)",
    "concentrations": "c, Dirichlet concentrations of debt sizes (> 0; small = unequal debts)",
    "mus": "μ, maturity misalignments in [0, 1]",
    "outside_mid_ratios": "ρ, the outside market's price of a claim as a fraction of its face (> 0; 1 = par). "
                          "The outside market is the VBT (value-based trader) beside each dealer: its mid "
                          "price is ρ × (1 − expected default rate), and dealers quote around it",
    "seeds": "random seeds; the passive and active runs of a pair share one",
    "regime": "ring sweeps only: passive (dealers never trade) or active; a balanced sweep runs both "
              "(default active)",
    "cash_accounting": "conserving: the dealer pays price × face, no money is created; bilancio_compat: "
                       "the original's money creation on trades",
    "description": "what this sweep is for",
    "job_id": "empty: a new readable id; an existing id resumes that sweep",
    "executor": "where the simulations run: local or modal; empty: the configured one (BILANCIO_EXECUTOR, "
                "else local)",
    "artifact_policy": "files each run keeps: all, summary (no event log) or none",
    "recompute": "re-run runs that already completed (otherwise they are kept and skipped)",
}


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
    executor: str = ""  # empty: the configured executor, filled in at launch
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


DEFAULTS = SweepSpec()


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
    """Check every field and return a normalised spec (lists as tuples, job id filled in).

    Every problem is collected and reported at once, in one SpecError."""
    problems: dict[str, str] = {}  # field -> the first thing wrong with it

    def check(thunk):
        try:
            return thunk()
        except SpecError as exc:
            for field_name, message in exc.problems:
                problems.setdefault(field_name, message)
            return None

    for name, choices in CHOICES.items():
        value = getattr(spec, name)
        allowed = choices + (("",) if name == "executor" else ())
        if name == "regime" and spec.sweep_type != "ring":
            continue
        if value not in allowed:
            problems[name] = f"{value!r} must be one of {', '.join(choices)}"
    kinds = {"kappas": float, "concentrations": float, "mus": float, "outside_mid_ratios": float, "seeds": int}
    lists = {name: check(lambda n=name, k=kind: _as_list(n, getattr(spec, n), k)) for name, kind in kinds.items()}
    for name, high in (("n_agents", MAX_N_AGENTS), ("maturity_days", MAX_MATURITY_DAYS)):
        value = getattr(spec, name)
        if isinstance(value, int) and not isinstance(value, bool) and value > high:
            problems[name] = f"{value} is over the limit of {high}"
    if lists["seeds"] and any(seed > MAX_SEED for seed in lists["seeds"]):
        problems.setdefault("seeds", f"every seed must be at most {MAX_SEED}")
    if not isinstance(spec.description, str) or len(spec.description) > 2000:
        problems["description"] = "must be text of at most 2000 characters"
    if spec.job_id:
        check(lambda: validate_job_id(spec.job_id))
    # Every run parameter goes through RunParams' own checks, so ranges are named once: the
    # scalars on the default cell, each list value on the default spec (so one bad field does
    # not hide another).
    usable = {name: tuple(values) if values else getattr(DEFAULTS, name) for name, values in lists.items()}
    cell = next(iter(_param_grid(DEFAULTS)))
    scalars = SweepSpec(**{**asdict(DEFAULTS), **{k: getattr(spec, k) for k in ("n_agents", "maturity_days", "extra")},
                           "cash_accounting": spec.cash_accounting if spec.cash_accounting in CASH_ACCOUNTINGS
                           else DEFAULTS.cash_accounting})
    check(lambda: _to_run_params(scalars, cell))
    for name, values in lists.items():
        for value in values or ():
            check(lambda n=name, v=value: _to_run_params(DEFAULTS, {**cell, _CELL_FIELD[n]: v}))
    if not problems:
        normalised = SweepSpec(**{**asdict(spec), **usable})
        if normalised.n_runs > max_runs:
            problems["kappas × concentrations × mus × outside_mid_ratios × seeds × regimes"] = (
                f"the grid has {normalised.n_runs} runs, over the limit of {max_runs}")
    if problems:
        order = list(SweepSpec.__dataclass_fields__)
        raise SpecError.of(sorted(problems.items(), key=lambda p: order.index(p[0]) if p[0] in order else len(order)))
    return SweepSpec(**{**asdict(spec), **usable, "job_id": spec.job_id or new_job_id()})


def _param_grid(spec: SweepSpec):
    for kappa, c, mu, rho, seed in itertools.product(
        spec.kappas, spec.concentrations, spec.mus, spec.outside_mid_ratios, spec.seeds
    ):
        for regime in spec.regimes:
            yield {"kappa": kappa, "concentration": c, "mu": mu, "outside_mid_ratio": rho, "seed": seed, "regime": regime}


_LIST_FIELD = {"kappa": "kappas", "concentration": "concentrations", "mu": "mus",
               "outside_mid_ratio": "outside_mid_ratios", "seed": "seeds"}
_CELL_FIELD = {v: k for k, v in _LIST_FIELD.items()}


def _to_run_params(spec: SweepSpec, cell: dict[str, Any]) -> RunParams:
    try:
        return RunParams(
            n_agents=spec.n_agents, maturity_days=spec.maturity_days, cash_accounting=spec.cash_accounting,
            **spec.extra, **cell,
        )
    except InvalidParameter as exc:
        # A bad value given through `extra` is named by its path there, so the user finds it.
        name = f"extra.{exc.name}" if exc.name in spec.extra else _LIST_FIELD.get(exc.name, exc.name)
        raise SpecError(name, f"{exc.value!r} must be {exc.allowed}") from None
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
