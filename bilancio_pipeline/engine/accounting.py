"""The accounting facts of one run that the pipeline's invariant checks read (MODEL.md §3):
the ring's total money at the end of each day, and how the payables ended.

Every payable the run created ends in exactly one of: settled (PayableSettled), defaulted
(ObligationDefaulted, or ObligationWrittenOff when its debtor is expelled), replaced (a
defaulter's receivable re-issued to the defaulter's creditors or cancelled with the ring) or
outstanding (live when the run stops). The counts come from tallies the engine keeps anyway
(no extra pass over the events), so the identity created = settled + defaulted + replaced +
outstanding is what a payable counted twice, or lost, breaks. The engine only counts; judging
is the checks' job (sweeps/invariants.py).
"""

from __future__ import annotations

from typing import Any

from bilancio_pipeline.engine.simulate import Ledger


def accounting_facts(ledger: Ledger, run_metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "money_by_day": list(ledger.money_by_day),
        "payables": {
            "created": ledger.next_serial - 1,
            "settled": run_metrics["n_clears"],
            "defaulted": run_metrics["payables_defaulted"],
            "replaced": ledger.replaced,
            "outstanding": len(ledger.payables),
        },
    }
