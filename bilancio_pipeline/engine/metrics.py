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


def _due_ids(created: list[dict[str, Any]]) -> tuple[set[Any], set[Any]]:
    """The ids a due of the day is known by: compat (payable_id/pid, alias) and clean (also
    contract_id when there is no payable id)."""
    pids = [d.get("payable_id") or d.get("pid") for d in created]
    aliases = {d.get("alias") for d in created}
    compat_ids = aliases.union(pids)
    compat_ids.discard(None)
    if all(pids):  # usual case: only reassigned payables lack a payable id
        return compat_ids, compat_ids
    clean_ids = aliases.union([pid or d.get("contract_id") for pid, d in zip(pids, created)])
    clean_ids.discard(None)
    return compat_ids, clean_ids


def compute_day_metrics(events: list[dict[str, Any]], money: Decimal | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of metrics.csv (§5.2) plus the day-list summary (§5.3) with both delta variants.

    Amounts are whole minor units, so sums, net positions and the RTGS peak are exact integers;
    phi/delta use Decimal division like the original. Each row also carries `_debtor_shares`
    and `_intraday` lists, which the artifact writer turns into debtor_shares.csv and
    intraday.csv."""
    created_by_day: dict[int, list[dict[str, Any]]] = defaultdict(list)
    settled_by_day: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        kind = e["kind"]
        if kind == "PayableCreated":
            if e.get("due_day") is not None:
                created_by_day[int(e["due_day"])].append(e)
        elif kind == "PayableSettled":
            settled_by_day[e["day"]].append(e)

    rows: list[dict[str, Any]] = []
    s_total = phi_weighted = delta_weighted = phi_clean_weighted = _ZERO
    n_tracked = 0
    max_g: float | None = None
    money_int = None if money is None else float(money)
    day1: dict[str, Any] = {}
    one = Decimal(1)
    with localcontext(_CTX):
        for t in sorted(created_by_day):
            created = created_by_day[t]
            # net position per agent, debtors first then creditors, each in order of appearance
            nets: dict[Any, int] = {}
            s_t = 0
            for d in created:
                amount = int(d["amount"])
                s_t += amount
                debtor = d["debtor"]
                nets[debtor] = nets.get(debtor, 0) - amount
            for d in created:
                creditor = d["creditor"]
                nets[creditor] = nets.get(creditor, 0) + int(d["amount"])
            positive = []
            mbar = n_debtors = 0
            for v in nets.values():
                if v > 0:
                    positive.append(v)
                elif v < 0:
                    mbar -= v
                    n_debtors += 1
            compat_ids, clean_ids = _due_ids(created)

            settled_today = settled_by_day.get(t, ())
            num = num_clean = 0
            for e in settled_today:
                pid = e.get("pid") or e.get("contract_id")
                alias = e.get("alias")
                if pid in compat_ids or alias in compat_ids:
                    num += e["amount"]
                    n_tracked += 1
                if pid in clean_ids or alias in clean_ids:
                    num_clean += e["amount"]
            phi_t = delta_t = None
            if s_t != 0:
                ds_t = Decimal(s_t)
                phi_t = Decimal(num) / ds_t
                delta_t = one - phi_t
                s_total += ds_t
                phi_weighted += ds_t * phi_t
                delta_weighted += ds_t * delta_t
                phi_clean_weighted += ds_t * (Decimal(num_clean) / ds_t)

            # RTGS replay of the day's settlements (all of them, rolled-over ones included);
            # positive_total is the sum of the positive cumulative net outflows
            running: dict[Any, int] = {}
            positive_total = peak = gross = 0
            steps = []
            step = 0
            for e in settled_today:
                amount = e["amount"]
                if amount == 0:
                    continue
                payer = e["debtor"]
                payee = e["creditor"]
                before = running.get(payer, 0)
                after = before + amount
                running[payer] = after
                positive_total += (after if after > 0 else 0) - (before if before > 0 else 0)
                before = running.get(payee, 0)
                after = before - amount
                running[payee] = after
                positive_total += (after if after > 0 else 0) - (before if before > 0 else 0)
                gross += amount
                if positive_total > peak:
                    peak = positive_total
                step += 1
                steps.append({"day": t, "step": step, "payer": payer, "payee": payee, "amount": amount,
                              "P_prefix": positive_total})
            positive_sum = sum(positive)
            hhi = sum([(x / positive_sum) ** 2 for x in positive]) if positive_sum else None
            # DS_t: each agent's shortfall max(0, -net) over Mbar_t
            if mbar:
                debtor_shares = [{"day": t, "agent": a, "DS_t": (-v if v < 0 else 0) / mbar} for a, v in nets.items()]
            else:
                debtor_shares = [{"day": t, "agent": a, "DS_t": None} for a in nets]
            g_t = max(0.0, mbar - money_int) if money_int is not None else None
            if g_t is not None:
                max_g = g_t if max_g is None else max(max_g, g_t)
            notes = []
            if hhi is None:
                notes.append("no net creditors")
            if mbar == 0:
                notes.append("no net debtors")
            row = {
                "day": t,
                "S_t": s_t,
                "Mbar_t": mbar,
                "M_t": money_int,
                "G_t": g_t,
                "alpha_t": 1 - mbar / s_t if s_t else None,
                "Mpeak_t": peak,
                "gross_settled_t": gross,
                "v_t": gross / peak if peak else None,
                "phi_t": _as_number(phi_t),
                "delta_t": _as_number(delta_t),
                "HHIplus_t": hhi,
                "n_debtors": n_debtors,
                "n_creditors": len(positive),
                "notes": "; ".join(notes),
                "_debtor_shares": debtor_shares,
                "_intraday": steps,
            }
            rows.append(row)
            if t == 1:
                day1 = row

        phi_total = phi_weighted / s_total if s_total else None
        delta_total = delta_weighted / s_total if s_total else None
        phi_clean_total = phi_clean_weighted / s_total if s_total else None
        delta_clean = one - phi_clean_total if phi_clean_total is not None else None
    summary = {
        "phi_total": _as_number(phi_total),
        "delta_total": _as_number(delta_total),
        "phi_clean": _as_number(phi_clean_total),
        "delta_clean": _as_number(delta_clean),
        "S_total": float(s_total),
        "time_to_stability": max(created_by_day) if created_by_day else 0,
        "n_clears_tracked": n_tracked,
        "max_G_t": max_g,
        "alpha_1": day1.get("alpha_t"),
        "Mpeak_1": day1.get("Mpeak_t"),
        "v_1": day1.get("v_t"),
        "HHIplus_1": day1.get("HHIplus_t"),
    }
    return rows, summary


def run_level_metrics(events: list[dict[str, Any]], s_total: float) -> dict[str, Any]:
    """Defaults, cascade fraction, losses, clears and trade totals (§5.3, §5.4)."""
    default_order: list[str] = []
    seen: set[str] = set()
    creditor_to_debtors: dict[str, set[str]] = defaultdict(set)
    loss = 0
    n_clears = 0
    defaulted_payables = 0
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
            defaulted_payables += 1
        elif kind == "ObligationWrittenOff":
            loss += int(e.get("amount", 0))
            defaulted_payables += 1
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
        "payables_defaulted": defaulted_payables,
        "payable_default_loss": loss,
        "total_loss": loss,
        "total_loss_pct": loss / s_total if s_total > 0 else None,
        "total_trades": trades,
        "total_trade_volume": volume,
        "trade_volume_face": face,
    }


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics.csv row without the helper lists."""
    return {k: v for k, v in row.items() if not k.startswith("_")}
