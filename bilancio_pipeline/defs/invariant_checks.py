"""The `accounting_invariants` asset check of `run_metrics`: every run of the batch conserves
money (in `conserving` mode) and ends each payable in exactly one state (sweeps/invariants.py)."""

import dagster as dg

from bilancio_pipeline.sweeps.invariants import MAX_NAMED, check_runs, summary_line

ACCOUNTING_CHECK = dg.AssetCheckSpec(
    "accounting_invariants", asset="run_metrics",
    description="conserving runs keep the ring's total money the same at the end of every day; every payable "
                "ends settled, defaulted, replaced (reassigned after a default) or outstanding, never two of them",
)


def accounting_check(metrics_rows) -> dg.AssetCheckResult:
    report = check_runs(metrics_rows)
    offending = report.offending_runs
    return dg.AssetCheckResult(
        check_name=ACCOUNTING_CHECK.name, asset_key="run_metrics", passed=report.passed,
        description=summary_line(report),
        metadata={
            "runs_checked": report.runs_checked,
            "offending_runs": dg.MetadataValue.json(offending[:MAX_NAMED]),
            "money_not_conserved": dg.MetadataValue.json(dict(sorted(report.money_not_conserved.items())[:MAX_NAMED])),
            "payables_in_two_states_or_none": dg.MetadataValue.json(
                dict(sorted(report.payables_unbalanced.items())[:MAX_NAMED])),
            "runs_without_accounting_facts": len(report.not_checked),
        },
    )
