"""The sweep form of the Launchpad: a typed Config whose fields the UI checks as you type."""

from __future__ import annotations

from enum import Enum

import dagster as dg
from pydantic import Field

from bilancio_pipeline.sweeps.spec import SweepSpec


class SweepType(str, Enum):
    balanced = "balanced"  # passive and active runs of every cell, paired by seed
    ring = "ring"  # one regime


class Regime(str, Enum):
    passive = "passive"
    active = "active"


class CashAccounting(str, Enum):
    conserving = "conserving"  # the dealer pays price x face: no money is created
    bilancio_compat = "bilancio_compat"  # reproduces the original's money creation on trades


class Executor(str, Enum):
    local = "local"
    modal = "modal"


class ArtifactPolicy(str, Enum):
    all = "all"  # scenario, event log, CSVs and run pages
    summary = "summary"  # everything but the event log (the largest file)
    none = "none"  # no files; the store rows only


class SweepConfig(dg.Config):
    sweep_type: SweepType = Field(SweepType.balanced, description="balanced: passive/active pairs; ring: one regime")
    n_agents: int = Field(50, description="traders in the ring (>= 2)")
    maturity_days: int = Field(10, description="horizon over which due days are spread (>= 1)")
    kappas: list[float] = Field([0.5, 1.0], description="liquidity ratios L0/S1 (>= 0)")
    concentrations: list[float] = Field([1.0], description="Dirichlet concentrations of debt sizes (> 0)")
    mus: list[float] = Field([0.5], description="maturity misalignments in [0, 1]")
    outside_mid_ratios: list[float] = Field([1.0], description="VBT mid price as a fraction of face (> 0)")
    seeds: list[int] = Field([42], description="random seeds; a passive/active pair shares one")
    regime: Regime = Field(Regime.active, description="the regime of a ring sweep (ignored when balanced)")
    cash_accounting: CashAccounting = Field(CashAccounting.conserving, description="dealer cash accounting")
    description: str = Field("", description="what this sweep is for")
    job_id: str = Field("", description="leave empty for a new readable id; repeat one to resume that sweep")
    executor: Executor = Field(Executor.local, description="where the simulations run")
    artifact_policy: ArtifactPolicy = Field(
        ArtifactPolicy.all, description="files each run keeps: all, summary (no event log) or none")

    def to_spec(self) -> SweepSpec:
        return SweepSpec(
            sweep_type=self.sweep_type.value, n_agents=self.n_agents, maturity_days=self.maturity_days,
            kappas=tuple(self.kappas), concentrations=tuple(self.concentrations), mus=tuple(self.mus),
            outside_mid_ratios=tuple(self.outside_mid_ratios), seeds=tuple(self.seeds), regime=self.regime.value,
            cash_accounting=self.cash_accounting.value, description=self.description, job_id=self.job_id,
            executor=self.executor.value, artifact_policy=self.artifact_policy.value,
        )
