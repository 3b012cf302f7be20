"""The sweep form of the Launchpad: a typed Config whose fields the UI checks as you type.

Its defaults, choices and descriptions come from `sweeps.spec` (SweepSpec, CHOICES, HELP), the
one place the command line's options come from too. What the editor checks before launch:
types, the choice fields, unknown fields. Ranges, empty or duplicate lists, the grid's size and
the job id's form are checked at launch, all at once (`spec.validate`).
"""

from __future__ import annotations

from enum import Enum
from typing import Optional

import dagster as dg
from pydantic import Field

from bilancio_pipeline.sweeps.spec import CHOICES, DEFAULTS, HELP, SweepSpec


def _choice(name: str) -> type[Enum]:
    return Enum(name.title().replace("_", ""), {value: value for value in CHOICES[name]}, type=str)


SweepType, Regime, CashAccounting, Executor, ArtifactPolicy = (
    _choice(n) for n in ("sweep_type", "regime", "cash_accounting", "executor", "artifact_policy"))


def _field(name: str, **kwargs):
    default = getattr(DEFAULTS, name)
    return Field(list(default) if isinstance(default, tuple) else default, description=HELP[name], **kwargs)


class SweepConfig(dg.Config):
    sweep_type: SweepType = _field("sweep_type")
    n_agents: int = _field("n_agents")
    maturity_days: int = _field("maturity_days")
    kappas: list[float] = _field("kappas")
    concentrations: list[float] = _field("concentrations")
    mus: list[float] = _field("mus")
    outside_mid_ratios: list[float] = _field("outside_mid_ratios")
    seeds: list[int] = _field("seeds")
    # Optional and empty: only a ring sweep reads it, so a balanced sweep's form shows no regime.
    regime: Optional[Regime] = Field(None, description=HELP["regime"])
    cash_accounting: CashAccounting = _field("cash_accounting")
    description: str = _field("description")
    job_id: str = _field("job_id")
    executor: Optional[Executor] = Field(None, description=HELP["executor"])  # empty: BILANCIO_EXECUTOR
    artifact_policy: ArtifactPolicy = _field("artifact_policy")
    recompute: bool = Field(False, description=HELP["recompute"])

    def to_spec(self) -> SweepSpec:
        values = {name: _plain(getattr(self, name)) for name in SweepConfig.model_fields if name != "recompute"}
        lists = ("kappas", "concentrations", "mus", "outside_mid_ratios", "seeds")
        return SweepSpec(**{**values, **{name: tuple(values[name]) for name in lists},
                            "regime": values["regime"] or DEFAULTS.regime, "executor": values["executor"] or ""})


def _plain(value):
    return value.value if isinstance(value, Enum) else value


class BatchConfig(dg.Config):
    """The config of a batch of `runs` partitions (Launchpad of sweep_batch_job, or the asset page's
    "Materialize" with its config)."""

    recompute: bool = Field(False, description=HELP["recompute"])
