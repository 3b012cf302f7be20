"""Per-day and per-run metrics (MODEL.md §5), computed from the event list of one run.

The per-day numbers use 28-digit Decimal arithmetic like the original's report code, so the
compat `delta_total` equals the original's to the last printed digit. Two matchings of
settlements to dues are computed:

* compat: a due is identified by `payable_id`/`pid` or alias only. Reassigned payables log only
  a `contract_id`, so they never match and always count as defaulted (the original's bug);
* clean: `contract_id` identifies a due as well.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Context, Decimal, localcontext
from typing import Any, Iterable

_CTX = Context(prec=28)
_ZERO = Decimal(0)


def _due_ids(e: dict[str, Any], clean: bool) -> list[str]:
    pid = e.get("payable_id") or e.get("pid")
    if clean and not pid:
        pid = e.get("contract_id")
    return [str(x) for x in (pid, e.get("alias")) if x]


def _settled_matches(e: dict[str, Any], id_to_due: dict[str, int]) -> int | None:
    pid = str(e.get("pid") or e.get("contract_id") or "")
    alias = str(e.get("alias") or "")
    if pid and pid in id_to_due:
        return id_to_due[pid]
    if alias and alias in id_to_due:
        return id_to_due[alias]
    return None


def money_supply(balances: Iterable[dict[str, Any]]) -> Decimal:
    """M_t: every agent's cash (plus deposits/reserves, none here) in the end-of-run snapshot."""
    total = _ZERO
    for row in balances:
        if row.get("item_type") or str(row.get("agent_id", "")).upper() == "SYSTEM":
            continue
        for key in ("assets_cash", "assets_bank_deposit", "assets_reserve_deposit"):
            value = row.get(key)
            if value not in (None, "", "None"):
                total += Decimal(str(value))
    return total


def _as_number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def compute_day_metrics(events: list[dict[str, Any]], money: Decimal | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of metrics.csv (§5.2) plus the day-list summary (§5.3) with both delta variants.

    Returns (rows, summary) where rows also carry `debtor_shares` and `intraday` lists that the
    artifact writer turns into debtor_shares.csv and intraday.csv."""
    created_by_day: dict[int, list[dict[str, Any]]] = defaultdict(list)
    settled_by_day: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        kind = e["kind"]
        if kind == "PayableCreated":
            if e.get("due_day") is not None:
                created_by_day[int(e["due_day"])].append(e)
        elif kind == "PayableSettled":
            settled_by_day[int(e["day"])].append(e)

    rows: list[dict[str, Any]] = []
    s_total = phi_weighted = delta_weighted = phi_clean_weighted = _ZERO
    n_tracked = 0
    max_g: Decimal | None = None
    day1: dict[str, Any] = {}
    with localcontext(_CTX):
        for t in sorted(created_by_day):
            dues = created_by_day[t]
            outflow: dict[str, Decimal] = defaultdict(Decimal)
            inflow: dict[str, Decimal] = defaultdict(Decimal)
            s_t = _ZERO
            compat_ids: dict[str, int] = {}
            clean_ids: dict[str, int] = {}
            for d in dues:
                amount = Decimal(d["amount"])
                s_t += amount
                outflow[d["debtor"]] += amount
                inflow[d["creditor"]] += amount
                for key in _due_ids(d, False):
                    compat_ids[key] = t
                for key in _due_ids(d, True):
                    clean_ids[key] = t
            agents = list(dict.fromkeys(list(outflow) + list(inflow)))
            nets = {a: inflow.get(a, _ZERO) - outflow.get(a, _ZERO) for a in agents}
            shortfalls = {a: max(_ZERO, outflow.get(a, _ZERO) - inflow.get(a, _ZERO)) for a in agents}
            mbar = sum(shortfalls.values(), _ZERO)

            settled_today = settled_by_day.get(t, [])
            num = num_clean = _ZERO
            for e in settled_today:
                amount = Decimal(e["amount"])
                if _settled_matches(e, compat_ids) == t:
                    num += amount
                    n_tracked += 1
                if _settled_matches(e, clean_ids) == t:
                    num_clean += amount
            phi_t = delta_t = None
            if s_t != 0:
                phi_t = num / s_t
                delta_t = Decimal(1) - phi_t
                phi_clean = num_clean / s_t
                s_total += s_t
                phi_weighted += s_t * phi_t
                delta_weighted += s_t * delta_t
                phi_clean_weighted += s_t * phi_clean

            # RTGS replay of the day's settlements (all of them, rolled-over ones included)
            running: dict[str, Decimal] = defaultdict(Decimal)
            positive_total = _ZERO  # sum of positive cumulative net outflows, kept incrementally
            peak = gross = _ZERO
            steps = []
            for e in settled_today:
                amount = Decimal(e["amount"])
                if amount == 0:
                    continue
                for agent, change in ((e["debtor"], amount), (e["creditor"], -amount)):
                    before = running[agent]
                    after = before + change
                    running[agent] = after
                    positive_total += max(after, _ZERO) - max(before, _ZERO)
                gross += amount
                if positive_total > peak:
                    peak = positive_total
                steps.append({"day": t, "step": len(steps) + 1, "payer": e["debtor"], "payee": e["creditor"],
                              "amount": amount, "P_prefix": positive_total})
            velocity = gross / peak if peak != 0 else None

            positive = [v for v in nets.values() if v > 0]
            positive_sum = sum(positive, _ZERO)
            hhi = sum(((x / positive_sum) ** 2 for x in positive), _ZERO) if positive_sum != 0 else None
            debtor_shares = (
                {a: v / mbar for a, v in shortfalls.items()} if mbar != 0 else dict.fromkeys(shortfalls)
            )
            alpha_t = Decimal(1) - mbar / s_t if s_t != 0 else None
            g_t = max(_ZERO, mbar - money) if money is not None else None
            if g_t is not None:
                max_g = g_t if max_g is None else max(max_g, g_t)
            notes = []
            if hhi is None:
                notes.append("no net creditors")
            if all(v is None for v in debtor_shares.values()):
                notes.append("no net debtors")
            row = {
                "day": t,
                "S_t": s_t,
                "Mbar_t": mbar,
                "M_t": money,
                "G_t": g_t,
                "alpha_t": alpha_t,
                "Mpeak_t": peak,
                "gross_settled_t": gross,
                "v_t": velocity,
                "phi_t": phi_t,
                "delta_t": delta_t,
                "HHIplus_t": hhi,
                "n_debtors": sum(1 for a in agents if outflow.get(a, _ZERO) > inflow.get(a, _ZERO)),
                "n_creditors": len(positive),
                "notes": "; ".join(notes),
            }
            rows.append(row)
            row["_debtor_shares"] = [{"day": t, "agent": a, "DS_t": v} for a, v in debtor_shares.items()]
            row["_intraday"] = steps
            if t == 1:
                day1 = row

        phi_total = phi_weighted / s_total if s_total else None
        delta_total = delta_weighted / s_total if s_total else None
        phi_clean_total = phi_clean_weighted / s_total if s_total else None
    summary = {
        "phi_total": _as_number(phi_total),
        "delta_total": _as_number(delta_total),
        "phi_clean": _as_number(phi_clean_total),
        "delta_clean": None if phi_clean_total is None else float(Decimal(1) - phi_clean_total),
        "S_total": float(s_total),
        "time_to_stability": max(created_by_day) if created_by_day else 0,
        "n_clears_tracked": n_tracked,
        "max_G_t": _as_number(max_g),
        "alpha_1": _as_number(day1.get("alpha_t")),
        "Mpeak_1": _as_number(day1.get("Mpeak_t")),
        "v_1": _as_number(day1.get("v_t")),
        "HHIplus_1": _as_number(day1.get("HHIplus_t")),
    }
    return rows, summary


def run_level_metrics(events: list[dict[str, Any]], s_total: float) -> dict[str, Any]:
    """Defaults, cascade fraction, losses, clears and trade totals (§5.3, §5.4)."""
    default_order: list[str] = []
    seen: set[str] = set()
    creditor_to_debtors: dict[str, set[str]] = defaultdict(set)
    loss = 0
    n_clears = 0
    trades = 0
    volume = 0.0
    face = 0
    for e in events:
        kind = e["kind"]
        if kind == "PayableSettled":
            n_clears += 1
        elif kind == "PayableCreated":
            creditor_to_debtors[e["creditor"]].add(e["debtor"])
        elif kind == "AgentDefaulted":
            agent = e.get("agent") or e.get("frm")
            if agent and agent not in seen:
                seen.add(agent)
                default_order.append(agent)
        elif kind == "ObligationDefaulted":
            loss += int(e.get("shortfall", 0))
        elif kind == "ObligationWrittenOff":
            loss += int(e.get("amount", 0))
        elif kind == "dealer_trade":
            trades += 1
            volume += float(e["price"])
            face += int(e["face"])
    secondary = 0
    earlier: set[str] = set()
    for agent in default_order:
        if creditor_to_debtors.get(agent, set()) & earlier:
            secondary += 1
        earlier.add(agent)
    total_defaults = len(default_order)
    return {
        "n_defaults": total_defaults,
        "cascade_fraction": secondary / total_defaults if total_defaults else None,
        "n_clears": n_clears,
        "n_clears_all": n_clears,
        "payable_default_loss": loss,
        "total_loss": loss,
        "total_loss_pct": loss / s_total if s_total > 0 else None,
        "total_trades": trades,
        "total_trade_volume": volume,
        "trade_volume_face": face,
    }


def plain_row(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics.csv row with Decimals as floats and without the helper lists."""
    return {k: (float(v) if isinstance(v, Decimal) else v) for k, v in row.items() if not k.startswith("_")}
