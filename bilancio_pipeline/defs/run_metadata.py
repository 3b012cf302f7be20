"""What a `runs` partition shows in the Dagster UI: its run's parameters, headline metrics and a
link to its files, as the metadata of each asset's materialization for that partition; and
the same kind of summary for a sweep's job_metrics.

Partition keys (`{job_id}_{regime}_{hash}`) are cut in the middle by the UI and say nothing of
the parameters; they stay as they are (stored sweeps use them), and the `run` entry spells the
run out: "passive · κ 0.5 · c 1 · μ 0.5 · ρ 1 · seed 42".
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from bilancio_pipeline.storage.base import Row

PARAMETERS = ("regime", "kappa", "concentration", "mu", "outside_mid_ratio", "seed", "n_agents", "maturity_days",
              "cash_accounting")
HEADLINE = ("delta_total", "phi_total", "delta_clean", "n_defaults", "total_trades")
_SYMBOL = {"kappa": "κ", "concentration": "c", "mu": "μ", "outside_mid_ratio": "ρ", "seed": "seed"}
DIGITS = 4  # metrics are rates and shares: four significant digits read well and lose nothing real


def run_label(params: Row) -> str:
    parts = [str(params.get("regime"))] + [f"{symbol} {_number(params.get(name))}" for name, symbol in _SYMBOL.items()]
    return " · ".join(parts)


def run_metadata(params: Row, metrics: Row | None, artifacts_url: str | None, sweep_url: str) -> dict[str, Any]:
    """One run's metadata: label, parameters, headline metrics, links to its files and its sweep."""
    meta: dict[str, Any] = {"run": dg.MetadataValue.text(run_label(params))}
    for name in PARAMETERS:
        meta[name] = _value(params.get(name))
    for name in HEADLINE:
        meta[name] = _value((metrics or {}).get(name))
    if artifacts_url:
        meta["artifacts"] = dg.MetadataValue.url(artifacts_url)
    meta["sweep"] = dg.MetadataValue.url(sweep_url)
    return meta


def summary_metadata(row: Row, skip: tuple[str, ...] = ("job_id", "raw_summary", "created_at", "updated_at")) -> dict:
    """Every field of a row (job_metrics), numbers rounded to DIGITS significant digits."""
    return {name: _value(value) for name, value in row.items() if name not in skip}


def sweep_page(job_id: str) -> str:
    """The sweep's job_metrics partition in the UI (a path: it opens on whichever host serves the UI)."""
    return f"/assets/job_metrics?view=partitions&partition={job_id}"


def _value(value: Any):
    if value is None:
        return dg.MetadataValue.text("—")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return dg.MetadataValue.text(str(value))
    if isinstance(value, int):
        return dg.MetadataValue.int(value)
    return dg.MetadataValue.float(float(f"{value:.{DIGITS}g}"))


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
