"""Scenario generation for the balanced Kalecki ring (MODEL.md §2).

The debt sizes are drawn exactly as the original research code draws them: Python's Mersenne
Twister `gammavariate` per trader, then scaled to Q in 28-digit Decimal arithmetic, so that for a
given seed the amounts (after integer truncation) are identical to the original's scenarios.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Context, Decimal, localcontext
from functools import lru_cache
from math import isfinite
from typing import Any, NamedTuple

from bilancio_pipeline.engine.params import RunParams

BUCKETS = ("short", "mid", "long")
VBT_SHARE = Decimal("0.25")
DEALER_SHARE = Decimal("0.125")
MIN_AMOUNT = Decimal("0.01")
_DECIMAL_CONTEXT = Context(prec=28)


def bucket_of_day(day: int) -> int:
    """Maturity bucket index (0 short 1-3, 1 mid 4-8, 2 long >= 9); 0 and below count as short."""
    if day <= 3:
        return 0
    if day <= 8:
        return 1
    return 2


def kappa_prior(kappa: Decimal) -> Decimal:
    """Default-probability prior from the liquidity ratio: 0.05 + 0.15*max(0, 1-k)/(1+k)."""
    stress = max(Decimal(0), Decimal(1) - kappa) / (Decimal(1) + kappa)
    return Decimal("0.05") + Decimal("0.15") * stress


# Named tuples rather than frozen dataclasses: a run builds a few hundred of them and a frozen
# dataclass's __init__ costs several times more.
class PayableSpec(NamedTuple):
    debtor: int  # agent index
    creditor: int
    exact: Decimal  # amount before truncation (kept for scenario.yaml)
    amount: int  # int(exact), what the simulation uses
    due_day: int
    alias: str


class MintSpec(NamedTuple):
    to: int
    exact: Decimal
    amount: int
    alias: str


@dataclass
class Scenario:
    """A compiled ring: agents by index (traders 0..n-1, then vbt/dealer per bucket), the
    initial cash and payables in creation order, and the run control values."""

    params: RunParams
    agent_ids: list[str]
    n_traders: int
    mints: list[MintSpec]  # creation order of the original: traders first, then vbt/dealer per bucket
    payables: list[PayableSpec]  # ring, then trader->vbt, then trader->dealer
    kappa: Decimal
    p_prior: Decimal
    max_days: int
    quiet_days: int
    debt_sizes: list[Decimal] = field(default_factory=list)
    due_days: list[int] = field(default_factory=list)

    def vbt_index(self, bucket: int) -> int:
        return self.n_traders + 2 * bucket

    def dealer_index(self, bucket: int) -> int:
        return self.n_traders + 2 * bucket + 1

    def to_dict(self) -> dict[str, Any]:
        """The scenario in the shape of the original's scenario.yaml (MODEL.md §6)."""
        return scenario_document(self)


def draw_debt_sizes(n: int, concentration: float, q_total: Decimal, seed: int, monotonicity: float) -> list[Decimal]:
    """Dirichlet(c) shares of Q (§2.1), the last one taking the rounding remainder."""
    rng = random.Random(seed)
    weights = [rng.gammavariate(float(concentration), 1.0) for _ in range(n)]
    if sum(weights) <= 0:
        raise ValueError("Dirichlet weights summed to zero")
    with localcontext(_DECIMAL_CONTEXT):
        decimals = [Decimal(str(w)) for w in weights]
        weight_total = sum(decimals)
        amounts: list[Decimal] = []
        running = Decimal(0)
        for idx, weight in enumerate(decimals):
            if idx == n - 1:
                amount = q_total - running
            else:
                amount = (q_total * weight) / weight_total
                running += amount
            amounts.append(amount)
        amounts = _clamp_positive(amounts, q_total)
    return _apply_monotonicity(amounts, monotonicity, rng)


def _clamp_positive(amounts: list[Decimal], total: Decimal) -> list[Decimal]:
    """Keep every amount >= 0.01 while preserving the total (in practice it never binds)."""
    if all(a >= MIN_AMOUNT for a in amounts) and sum(amounts) == total:
        return list(amounts)  # what the steps below leave when nothing binds, without the passes
    adjusted = list(amounts)
    deficit = Decimal(0)
    for idx, amount in enumerate(adjusted):
        if amount <= 0:
            deficit += MIN_AMOUNT - amount
            adjusted[idx] = MIN_AMOUNT
    if deficit > 0:
        _take_from_largest(adjusted, deficit)
    diff = sum(adjusted) - total
    if diff > 0:
        _take_from_largest(adjusted, diff)
    elif diff < 0:
        adjusted[-1] += -diff
    adjusted = [max(a, MIN_AMOUNT) for a in adjusted]
    final_total = sum(adjusted)
    if final_total != total:
        adjusted[-1] = max(MIN_AMOUNT, adjusted[-1] + total - final_total)
    return adjusted


def _take_from_largest(adjusted: list[Decimal], amount: Decimal) -> None:
    for idx in sorted(range(len(adjusted)), key=lambda i: adjusted[i], reverse=True):
        if amount <= 0:
            return
        take = min(adjusted[idx] - MIN_AMOUNT, amount)
        if take > 0:
            adjusted[idx] -= take
            amount -= take


def _apply_monotonicity(amounts: list[Decimal], monotonicity: float, rng: random.Random) -> list[Decimal]:
    """Sort (descending for m > 0) and undo part of the order with random adjacent swaps."""
    n = len(amounts)
    if n <= 1 or abs(monotonicity) < 1e-9:
        return list(amounts)
    strength = min(abs(monotonicity), 1.0)
    ordered = sorted(amounts, reverse=monotonicity >= 0)
    swap_factor = 1.0 - strength
    if strength >= 1.0 - 1e-9 or swap_factor <= 1e-9:
        return ordered
    swaps = int(round(swap_factor * n * max(1, n - 1)))
    for _ in range(min(swaps, n * (n - 1))):
        idx = rng.randrange(n - 1)
        ordered[idx], ordered[idx + 1] = ordered[idx + 1], ordered[idx]
    return ordered


class _Labels(NamedTuple):
    """The text labels of an n-trader ring. A sweep reuses a few ring sizes, so they are
    formatted once per size rather than once per run."""

    ids: tuple[str, ...]  # H1..Hn
    ring_aliases: tuple[str, ...]  # P_Hi_Hi+1, trader i's ring payable
    cash_aliases: tuple[str, ...]  # LIQ_Hi
    desk_aliases: tuple[tuple[str, ...], ...]  # trader i's payable to desk n + k is desk_aliases[i][k]
    names: tuple[str, ...]  # Agent i, the display names of scenario.yaml


@lru_cache(maxsize=8)
def _labels(n: int) -> _Labels:
    return _Labels(
        ids=tuple(f"H{i + 1}" for i in range(n)),
        ring_aliases=tuple(f"P_H{i + 1}_H{(i + 1) % n + 1}" for i in range(n)),
        cash_aliases=tuple(f"LIQ_H{i + 1}" for i in range(n)),
        desk_aliases=tuple(
            tuple(f"P_H{i + 1}_{role}_{bucket}" for bucket in BUCKETS for role in ("vbt", "dealer")) for i in range(n)
        ),
        names=tuple(f"Agent {i + 1}" for i in range(n)),
    )


def due_days_for(n: int, days: int, mu: float) -> list[int]:
    """Lead/lag maturity kernel (§2.3); Python round() is round-half-even as in the original."""
    if days <= 1:
        return [1] * n
    lead = max(0, min(days - 1, int(round(float(mu) * (days - 1)))))
    if lead == 0:
        return [1] * n
    return [((days + (idx * lead) % days - lead) % days) + 1 for idx in range(n)]


def generate(params: RunParams) -> Scenario:
    """Compile the balanced ring scenario of §2 (identical for the passive and active regime)."""
    n = params.n_agents
    with localcontext(_DECIMAL_CONTEXT):
        kappa = Decimal(str(params.kappa))
        q_total = Decimal(str(params.q_total))
        sizes = draw_debt_sizes(n, params.concentration, q_total, params.seed, params.monotonicity)
        dues = due_days_for(n, params.maturity_days, params.mu)
        buckets = [bucket_of_day(d) for d in dues]

        bucket_totals = [Decimal(0)] * 3
        for amount, b in zip(sizes, buckets):
            bucket_totals[b] += amount
        vbt_holdings = [t * VBT_SHARE for t in bucket_totals]
        dealer_holdings = [t * DEALER_SHARE for t in bucket_totals]
        additional_debt = sum(vbt_holdings) + sum(dealer_holdings)
        base_cash = (q_total * kappa) / Decimal(n)
        trader_cash = base_cash + additional_debt / Decimal(n)

        labels = _labels(n)
        agent_ids = list(labels.ids)
        for bucket in BUCKETS:
            agent_ids += [f"vbt_{bucket}", f"dealer_{bucket}"]

        cash_units = int(trader_cash)
        cash_aliases = labels.cash_aliases
        mints = [MintSpec(i, trader_cash, cash_units, cash_aliases[i]) for i in range(n)] if trader_cash > 0 else []
        ring_aliases = labels.ring_aliases
        payables = [PayableSpec(i, (i + 1) % n, sizes[i], int(sizes[i]), dues[i], ring_aliases[i]) for i in range(n)]
        # each trader's share of its bucket, divided once for both desks
        shares = [sizes[i] / bucket_totals[b] if bucket_totals[b] > 0 else None for i, b in enumerate(buckets)]
        faces = {"vbt": [0] * 3, "dealer": [0] * 3}  # whole units: summing ints is exact and cheap
        for role, holdings, offset in (("vbt", vbt_holdings, 0), ("dealer", dealer_holdings, 1)):
            role_faces = faces[role]
            for i, share in enumerate(shares):
                if share is None:
                    continue
                b = buckets[i]
                exact = holdings[b] * share
                if exact > MIN_AMOUNT:
                    amount = int(exact)
                    role_faces[b] += amount
                    desk = 2 * b + offset
                    payables.append(PayableSpec(i, n + desk, exact, amount, dues[i], labels.desk_aliases[i][desk]))
        p_prior = kappa_prior(kappa)
        cash_ratio = Decimal(1) - p_prior
        for b, bucket in enumerate(BUCKETS):
            for role, offset in (("vbt", 0), ("dealer", 1)):
                exact = Decimal(faces[role][b]) * cash_ratio
                if exact > 0:
                    mints.append(MintSpec(n + 2 * b + offset, exact, int(exact), f"LIQ_{role}_{bucket}"))

    days = params.maturity_days
    return Scenario(
        params=params,
        agent_ids=agent_ids,
        n_traders=n,
        mints=mints,
        payables=payables,
        kappa=kappa,
        p_prior=p_prior,
        max_days=max(30, 3 * days),
        quiet_days=days + 1 if params.rollover else 2,
        debt_sizes=sizes,
        due_days=dues,
    )


def _plain(value: Decimal) -> float | int:
    as_float = float(value)
    if as_float.is_integer() or not isfinite(as_float):
        return int(value) if value == value.to_integral_value() else as_float
    return as_float  # not whole as a float, so not whole as a Decimal: no exact test needed


def scenario_document(s: Scenario) -> dict[str, Any]:
    p = s.params
    ids = s.agent_ids
    agents = [{"id": "CB", "kind": "central_bank", "name": "Central Bank"}]
    agents += [{"id": ids[i], "kind": "household", "name": name} for i, name in enumerate(_labels(s.n_traders).names)]
    for bucket in BUCKETS:
        agents += [
            {"id": f"vbt_{bucket}", "kind": "household", "name": f"VBT ({bucket})"},
            {"id": f"dealer_{bucket}", "kind": "household", "name": f"Dealer ({bucket})"},
        ]
    n = s.n_traders
    plain_cash = {v: _plain(v) for v in {m.exact for m in s.mints}}  # every trader mints the same: convert once
    actions: list[dict[str, Any]] = [
        {"mint_cash": {"to": ids[m.to], "amount": plain_cash[m.exact], "alias": m.alias}} for m in s.mints if m.to < n
    ]
    actions += [
        {
            "create_payable": {
                "from": ids[ps.debtor],
                "to": ids[ps.creditor],
                "amount": _plain(ps.exact),
                "due_day": ps.due_day,
                "alias": ps.alias,
                "maturity_distance": ps.due_day,
            }
        }
        for ps in s.payables
    ]
    actions += [
        {"mint_cash": {"to": ids[m.to], "amount": plain_cash[m.exact], "alias": m.alias}} for m in s.mints if m.to >= n
    ]
    risk = {
        "enabled": True,
        "base_risk_premium": "0.02",
        "urgency_sensitivity": "0.30",
        "lookback_window": 5,
        "buy_premium_multiplier": "1.0",
    }
    return {
        "version": 1,
        "name": f"Balanced Comparison ({p.regime}) (n={n}, kappa={p.kappa:g}, c={p.concentration:g}, mu={p.mu:g})",
        "description": (
            f"Ring of {n} agents with total dues S1={p.q_total:g}; initial liquidity L0={p.q_total * p.kappa:g} "
            f"(kappa={p.kappa:g}); Dirichlet concentration c={p.concentration:g}; maturity mu={p.mu:g} over "
            f"{p.maturity_days} day horizon; balanced mode={p.regime}, VBT=0.25, Dealer=0.125, rho={p.outside_mid_ratio:g}"
        ),
        "agents": agents,
        "initial_actions": actions,
        "scheduled_actions": [],
        "run": {
            "mode": "until_stable",
            "max_days": s.max_days,
            "quiet_days": s.quiet_days,
            "rollover_enabled": p.rollover,
            "default_handling": p.default_handling,
            "show": {"balances": ["CB"] + list(ids), "events": "detailed"},
            "export": {"balances_csv": "out/balances.csv", "events_jsonl": "out/events.jsonl"},
        },
        "dealer": {
            "enabled": True,
            "ticket_size": 1,
            "dealer_share": float(DEALER_SHARE),
            "vbt_share": float(VBT_SHARE),
            "risk_assessment": risk,
        },
        "balanced_dealer": {
            "enabled": True,
            "face_value": p.face_value,
            "outside_mid_ratio": p.outside_mid_ratio,
            "vbt_share_per_bucket": float(VBT_SHARE),
            "dealer_share_per_bucket": float(DEALER_SHARE),
            "mode": p.regime,
            "kappa": p.kappa,
            "mu": p.mu,
            "rollover_enabled": p.rollover,
            "trading_rounds": 100,
            "planning_horizon": 10,
            "cash_accounting": p.cash_accounting,
        },
        "_balanced_config": {
            "face_value": p.face_value,
            "outside_mid_ratio": p.outside_mid_ratio,
            "vbt_share_per_bucket": float(VBT_SHARE),
            "dealer_share_per_bucket": float(DEALER_SHARE),
            "mode": p.regime,
            "rollover_enabled": p.rollover,
            "n_banks": 0,
            "kappa": p.kappa,
            "concentration": p.concentration,
            "mu": p.mu,
            "maturity_days": p.maturity_days,
            "Q_total": p.q_total,
            "seed": p.seed,
            "cash_accounting": p.cash_accounting,
        },
    }
