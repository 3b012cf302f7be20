"""Parameters of one simulation run, validated before anything runs or is written."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

REGIMES = ("passive", "active")
CASH_ACCOUNTINGS = ("conserving", "bilancio_compat")
DEFAULT_HANDLINGS = ("expel-agent", "fail-fast")


class InvalidParameter(ValueError):
    """A run parameter is outside its allowed range; the message names it and the range."""

    def __init__(self, name: str, value: Any, allowed: str):
        self.name = name
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid {name}={value!r}: must be {allowed}")


@dataclass(frozen=True)
class RunParams:
    """One run of the balanced Kalecki ring (MODEL.md section 1 gives the meaning and defaults)."""

    n_agents: int = 50
    maturity_days: int = 10
    kappa: float = 1.0
    concentration: float = 1.0
    mu: float = 0.5
    outside_mid_ratio: float = 1.0
    seed: int = 42
    regime: str = "passive"
    cash_accounting: str = "conserving"
    q_total: float = 10000.0
    face_value: float = 20.0
    monotonicity: float = 0.0
    rollover: bool = True
    default_handling: str = "expel-agent"

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunParams:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidParameter(unknown[0], data[unknown[0]], f"one of the known parameters {sorted(known)}")
        return cls(**data)


def _number(name: str, value: Any, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
        raise InvalidParameter(name, value, allowed)
    return float(value)


def _integer(name: str, value: Any, minimum: int, allowed: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidParameter(name, value, allowed)
    return value


def validate(p: RunParams) -> None:
    """Raise InvalidParameter for the first parameter outside its range."""
    _integer("n_agents", p.n_agents, 2, "an integer >= 2")
    _integer("maturity_days", p.maturity_days, 1, "an integer >= 1")
    _integer("seed", p.seed, 0, "an integer >= 0")
    if _number("kappa", p.kappa, "a finite number >= 0") < 0:
        raise InvalidParameter("kappa", p.kappa, "a finite number >= 0")
    if _number("concentration", p.concentration, "a finite number > 0") <= 0:
        raise InvalidParameter("concentration", p.concentration, "a finite number > 0")
    if not 0 <= _number("mu", p.mu, "a number in [0, 1]") <= 1:
        raise InvalidParameter("mu", p.mu, "a number in [0, 1]")
    if _number("outside_mid_ratio", p.outside_mid_ratio, "a finite number > 0") <= 0:
        raise InvalidParameter("outside_mid_ratio", p.outside_mid_ratio, "a finite number > 0")
    if _number("q_total", p.q_total, "a finite number > 0") <= 0:
        raise InvalidParameter("q_total", p.q_total, "a finite number > 0")
    if _number("face_value", p.face_value, "a finite number > 0") <= 0:
        raise InvalidParameter("face_value", p.face_value, "a finite number > 0")
    if not -1 <= _number("monotonicity", p.monotonicity, "a number in [-1, 1]") <= 1:
        raise InvalidParameter("monotonicity", p.monotonicity, "a number in [-1, 1]")
    if p.regime not in REGIMES:
        raise InvalidParameter("regime", p.regime, f"one of {', '.join(REGIMES)}")
    if p.cash_accounting not in CASH_ACCOUNTINGS:
        raise InvalidParameter("cash_accounting", p.cash_accounting, f"one of {', '.join(CASH_ACCOUNTINGS)}")
    if p.default_handling not in DEFAULT_HANDLINGS:
        raise InvalidParameter("default_handling", p.default_handling, f"one of {', '.join(DEFAULT_HANDLINGS)}")
    if not isinstance(p.rollover, bool):
        raise InvalidParameter("rollover", p.rollover, "true or false")
