"""Accounting invariants of every run in a batch, from the facts the engine puts in each run's
summary (engine/accounting.py, stored in metrics.raw_metrics):

* money is conserved: in `conserving` mode the ring's total money at the end of every day
  equals what the central bank issued at setup (`bilancio_compat` creates money on trades by
  design, so only the payables are checked there);
* every payable ends in exactly one state: created = settled + defaulted + replaced +
  outstanding (a payable counted in two states, or in none, breaks the identity).

Plain Python over metrics rows; the Dagster asset turns the result into an asset check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_NAMED = 50  # offending runs named in the check's metadata


@dataclass
class InvariantReport:
    runs_checked: int = 0
    not_checked: list[str] = field(default_factory=list)  # runs from an engine without the facts
    money_not_conserved: dict[str, dict[str, Any]] = field(default_factory=dict)
    payables_unbalanced: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not (self.money_not_conserved or self.payables_unbalanced)

    @property
    def offending_runs(self) -> list[str]:
        return sorted({*self.money_not_conserved, *self.payables_unbalanced})


def check_runs(metrics_rows: Iterable[Mapping[str, Any]]) -> InvariantReport:
    report = InvariantReport()
    for row in metrics_rows:
        raw = row.get("raw_metrics") or {}
        facts = raw.get("accounting")
        if not facts:
            report.not_checked.append(row["run_id"])
            continue
        report.runs_checked += 1
        if raw.get("cash_accounting") == "conserving":
            issued = raw.get("cash_minted_total")
            bad_days = [(day, money) for day, money in enumerate(facts["money_by_day"]) if money != issued]
            if bad_days:
                day, money = bad_days[0]
                report.money_not_conserved[row["run_id"]] = {"issued": issued, "first_day": day, "money_that_day": money,
                                                            "days_off": len(bad_days)}
        p = facts["payables"]
        if p["created"] != p["settled"] + p["defaulted"] + p["replaced"] + p["outstanding"]:
            report.payables_unbalanced[row["run_id"]] = dict(p)
    return report


def summary_line(report: InvariantReport) -> str:
    if report.passed:
        return f"{report.runs_checked} runs: money conserved and every payable in exactly one state"
    return (f"{len(report.offending_runs)} of {report.runs_checked} runs break the accounting: "
            f"{len(report.money_not_conserved)} change the total money, "
            f"{len(report.payables_unbalanced)} have payables in two states or none")
