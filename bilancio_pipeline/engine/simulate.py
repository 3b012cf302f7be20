"""The day loop of the Kalecki ring (MODEL.md §3): settlement, defaults, reassignment, rollover.

Money is integer minor units held in plain lists indexed by agent; payables are small slotted
objects kept in one insertion-ordered dict (the original's contract order matters for creditor
weights, write-offs and reassignment) plus a per-due-day list in creation order.

Two behaviours of the original that MODEL.md does not spell out are reproduced: a firm holding
its own payable (it bought the ticket back) cannot pay itself, so the payable defaults; and with
default_handling "fail-fast" the original aborts the run at the first default, which here ends
the day loop (stop_reason "default_fail_fast") so the metrics of the partial run stay available.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Context, Decimal, localcontext
from operator import attrgetter
from typing import Any, Callable

from bilancio_pipeline.engine.scenario import Scenario

_DECIMAL_CONTEXT = Context(prec=28)
_due_of = attrgetter("due")


class Payable:
    __slots__ = ("serial", "cid", "debtor", "creditor", "holder", "amount", "due", "dist", "alias", "live")

    def __init__(self, serial: int, debtor: int, creditor: int, amount: int, due: int, dist: int, alias: str | None):
        self.serial = serial
        self.cid = "PAY_%06d" % serial
        self.debtor = debtor
        self.creditor = creditor  # original creditor (the asset holder of record; rollover goes to it)
        self.holder = creditor  # current holder (changes when the claim is sold)
        self.amount = amount
        self.due = due
        self.dist = dist  # maturity distance, kept through rollover and reassignment
        self.alias = alias
        self.live = True


@dataclass
class Ledger:
    """Balance sheets of one run: cash per agent, live payables, defaults, and the event log."""

    scenario: Scenario
    ids: list[str]
    n_traders: int
    cash: list[int]
    defaulted: list[bool]
    payables: dict[int, Payable] = field(default_factory=dict)
    by_due: dict[int, list[Payable]] = field(default_factory=dict)
    # live payables per debtor, in creation order like `payables`: a default looks up the
    # defaulter's liabilities twice, which would otherwise scan every live payable
    by_debtor: dict[int, dict[int, Payable]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    day: int = 0
    next_serial: int = 1
    cb_minted: int = 0  # cash the central bank issued (initial + any minted by the compat dealer)
    defaults_today: int = 0
    settled_today: int = 0
    # settlement observations for the dealer's belief tracker: (day, issuer, defaulted)
    history: list[tuple[int, int, bool]] = field(default_factory=list)
    new_payables: list[Payable] = field(default_factory=list)  # created since the dealer last looked
    track_new: bool = True  # only the active regime's dealer reads new_payables

    def add_payable(self, debtor: int, creditor: int, amount: int, due: int, dist: int, alias: str | None) -> Payable:
        serial = self.next_serial
        p = Payable(serial, debtor, creditor, amount, due, dist, alias)
        self.next_serial = serial + 1
        self.payables[serial] = p
        owed = self.by_debtor.get(debtor)
        if owed is None:
            self.by_debtor[debtor] = {serial: p}
        else:
            owed[serial] = p
        bucket = self.by_due.get(due)
        if bucket is None:
            self.by_due[due] = [p]
        else:
            bucket.append(p)
        if self.track_new:
            self.new_payables.append(p)
        return p

    def remove(self, p: Payable) -> None:
        p.live = False
        del self.payables[p.serial]
        del self.by_debtor[p.debtor][p.serial]

    def liabilities(self, agent: int) -> list[Payable]:
        """The agent's live payables in creation order."""
        owed = self.by_debtor.get(agent)
        return list(owed.values()) if owed else []

    def log(self, kind: str, **fields: Any) -> None:
        fields["kind"] = kind
        fields["day"] = self.day
        fields["phase"] = "simulation"
        self.events.append(fields)


def build_ledger(scenario: Scenario) -> Ledger:
    """Apply the scenario's initial actions in the original's order (setup events on day 0)."""
    ids = scenario.agent_ids
    ledger = Ledger(scenario, ids, scenario.n_traders, [0] * len(ids), [False] * len(ids))
    events = ledger.events
    n = scenario.n_traders

    def mint(m) -> None:
        ledger.cash[m.to] += m.amount
        ledger.cb_minted += m.amount
        events.append({"kind": "CashMinted", "day": 0, "phase": "setup", "to": ids[m.to], "amount": m.amount, "alias": m.alias})

    for m in scenario.mints:
        if m.to < n:
            mint(m)
    for spec in scenario.payables:
        p = ledger.add_payable(spec.debtor, spec.creditor, spec.amount, spec.due_day, spec.due_day, spec.alias)
        events.append(
            {
                "kind": "PayableCreated",
                "day": 0,
                "phase": "setup",
                "debtor": ids[spec.debtor],
                "creditor": ids[spec.creditor],
                "amount": spec.amount,
                "due_day": spec.due_day,
                "maturity_distance": spec.due_day,
                "payable_id": p.cid,
                "alias": spec.alias,
            }
        )
    for m in scenario.mints:
        if m.to >= n:
            mint(m)
    return ledger


@dataclass
class DayLoopResult:
    ledger: Ledger
    last_sim_day: int
    stop_reason: str


DealerPhase = Callable[[Ledger, int], None]


def run_day_loop(ledger: Ledger, dealer_phase: DealerPhase | None, *, rollover: bool, fail_fast: bool) -> DayLoopResult:
    """Run days 0, 1, ... until the stopping rule of §3.2 (or max_days) is met."""
    scenario = ledger.scenario
    quiet_needed = scenario.quiet_days
    consecutive = 0
    stop_reason = "max_days"
    days_run = 0
    for _ in range(scenario.max_days):
        t = ledger.day
        ledger.defaults_today = 0
        ledger.settled_today = 0
        if dealer_phase is not None:
            dealer_phase(ledger, t)
        settled = settle_due(ledger, t, fail_fast=fail_fast)
        days_run += 1
        if settled is None:  # fail-fast: the first default ends the run
            stop_reason = "default_fail_fast"
            break
        if rollover and settled:
            roll_over(ledger, t, settled)
        ledger.day += 1
        if rollover:
            consecutive = consecutive + 1 if ledger.defaults_today == 0 else 0
            if consecutive >= quiet_needed:
                stop_reason = "stable"
                break
        else:
            consecutive = consecutive + 1 if ledger.settled_today == 0 else 0
            if consecutive >= quiet_needed and not ledger.payables:
                stop_reason = "stable"
                break
    return DayLoopResult(ledger, days_run - 1, stop_reason)


def settle_due(ledger: Ledger, t: int, *, fail_fast: bool) -> list[tuple[int, int, int, int]] | None:
    """Settle every payable due today in creation order (§3.1 step 4).

    Returns the (debtor, original creditor, amount, distance) of each payable paid in full, for
    rollover; None if a default ended a fail-fast run."""
    due = ledger.by_due.pop(t, None)
    if not due:
        return []
    cash = ledger.cash
    ids = ledger.ids
    defaulted = ledger.defaulted
    history = ledger.history
    events = ledger.events
    settled: list[tuple[int, int, int, int]] = []
    for p in due:
        if not p.live or defaulted[p.debtor]:
            continue
        debtor = p.debtor
        amount = p.amount
        available = cash[debtor]
        if p.holder == debtor and amount > 0:
            # A firm that bought back its own debt: the original's cash transfer to oneself is
            # refused, so nothing is paid and the payable defaults.
            available = 0
        if available >= amount:
            cash[debtor] = available - amount
            cash[p.holder] += amount
            ledger.remove(p)
            events.append(
                {
                    "kind": "PayableSettled",
                    "day": t,
                    "phase": "simulation",
                    "pid": p.cid,
                    "contract_id": p.cid,
                    "alias": p.alias,
                    "debtor": ids[debtor],
                    "creditor": ids[p.holder],
                    "amount": amount,
                }
            )
            ledger.settled_today += 1
            history.append((t, debtor, False))
            settled.append((debtor, p.creditor, amount, p.dist))
            continue
        if fail_fast:
            ledger.log("ObligationDefaulted", contract_id=p.cid, alias=p.alias, debtor=ids[debtor], creditor=ids[p.holder],
                       shortfall=amount - available, amount_paid=0, original_amount=amount, amount=amount - available)
            ledger.defaults_today += 1
            return None
        # Default: the partial payment stays with the holder (no rollback in expel mode).
        paid = available
        cash[debtor] -= paid
        cash[p.holder] += paid
        default_payable(ledger, p, paid, t)
    return settled


def default_payable(ledger: Ledger, p: Payable, paid: int, t: int) -> None:
    ids = ledger.ids
    debtor = p.debtor
    shortfall = p.amount - paid
    if paid > 0:
        ledger.log("PartialSettlement", contract_id=p.cid, alias=p.alias, debtor=ids[debtor], creditor=ids[p.holder],
                   settlement_kind="payable", amount_paid=paid, shortfall=shortfall, original_amount=p.amount)
    ledger.log("ObligationDefaulted", contract_id=p.cid, alias=p.alias, debtor=ids[debtor], creditor=ids[p.holder],
               shortfall=shortfall, amount_paid=paid, original_amount=p.amount, amount=shortfall)
    ledger.defaults_today += 1
    weights = creditor_weights(ledger, debtor)  # includes the defaulting payable at full amount
    ledger.remove(p)
    expel(ledger, debtor, p, shortfall)
    ledger.history.append((t, debtor, True))
    reassign_receivables(ledger, debtor, weights, t)


def creditor_weights(ledger: Ledger, agent: int) -> dict[int, Decimal]:
    """Share of the agent's outstanding liabilities owed to each current holder (sums to 1)."""
    claims: dict[int, int] = {}
    for p in ledger.liabilities(agent):
        claims[p.holder] = claims.get(p.holder, 0) + p.amount
    total = sum(claims.values())
    if total <= 0:
        return {}
    with localcontext(_DECIMAL_CONTEXT):
        dtotal = Decimal(total)
        return {holder: Decimal(amount) / dtotal for holder, amount in claims.items()}


def expel(ledger: Ledger, agent: int, trigger: Payable, shortfall: int) -> None:
    """Mark the agent defaulted, share its remaining cash pro rata, write off its liabilities."""
    ids = ledger.ids
    ledger.defaulted[agent] = True
    ledger.log("AgentDefaulted", agent=ids[agent], frm=ids[agent], trigger_contract=trigger.cid, contract_kind="payable",
               shortfall=shortfall, mode="expel-agent")
    ledger.defaults_today += 1
    liabilities = ledger.liabilities(agent)
    liquid = ledger.cash[agent]
    if liquid > 0 and liabilities:
        pro_rata_recovery(ledger, agent, liabilities, liquid)
    for p in liabilities:
        ledger.log("ObligationWrittenOff", contract_id=p.cid, alias=p.alias, debtor=ids[agent], creditor=ids[p.creditor],
                   contract_kind="payable", amount=p.amount, due_day=p.due)
        ledger.defaults_today += 1
        ledger.remove(p)


def pro_rata_recovery(ledger: Ledger, agent: int, liabilities: list[Payable], liquid: int) -> None:
    total_claims = sum(p.amount for p in liabilities)
    if total_claims <= 0:
        return
    cash = ledger.cash
    details = []
    distributed = 0
    for p in liabilities:
        share = round((p.amount / total_claims) * liquid)
        if share <= 0 or cash[agent] < share or p.holder == agent:  # transfers the original refuses
            continue
        cash[agent] -= share
        cash[p.holder] += share
        distributed += share
        details.append({"creditor": ledger.ids[p.holder], "claim": p.amount, "recovery": share})
    if distributed > 0:
        ledger.log("ProRataRecovery", agent=ledger.ids[agent], total_liquid=liquid, total_claims=total_claims,
                   total_distributed=distributed, num_creditors=len(details), details=details)


def reassign_receivables(ledger: Ledger, agent: int, weights: dict[int, Decimal], t: int) -> None:
    """Payables owed to the defaulter are re-issued to its creditors pro rata (§3.1 step 4.6)."""
    defaulted = ledger.defaulted
    receivables = [
        p for p in ledger.payables.values() if p.holder == agent and p.debtor != agent and not defaulted[p.debtor]
    ]
    if not receivables:
        return
    if not weights:
        for p in receivables:  # nobody to pass them to: the debt is cancelled
            ledger.remove(p)
        return
    ids = ledger.ids
    sole = next(iter(weights)) if len(weights) == 1 else None
    for r in receivables:
        debtor = r.debtor
        if sole == debtor:
            ledger.log("RingCollapsed", defaulted_agent=ids[agent], remaining_agent=ids[debtor], removed_payable=r.cid)
            ledger.remove(r)
            continue
        ledger.remove(r)
        new_due = t + r.dist
        with localcontext(_DECIMAL_CONTEXT):
            original = Decimal(r.amount)
            amounts = [(creditor, int(original * w), w) for creditor, w in weights.items() if creditor != debtor]
        for creditor, amount, w in amounts:
            if amount < 1:
                continue
            p = ledger.add_payable(debtor, creditor, amount, new_due, r.dist, None)
            ledger.log("ReceivableReassigned", defaulted_agent=ids[agent], debtor=ids[debtor], new_creditor=ids[creditor],
                       old_payable=r.cid, new_payable=p.cid, amount=amount, weight=float(w), maturity_distance=r.dist,
                       new_due_day=new_due)
            ledger.log("PayableCreated", contract_id=p.cid, debtor=ids[debtor], creditor=ids[creditor], amount=amount,
                       due_day=new_due, maturity_distance=r.dist, reason="receivable_reassignment")


def roll_over(ledger: Ledger, t: int, settled: list[tuple[int, int, int, int]]) -> None:
    """Re-issue each repaid payable to its original creditor, due MAX + ΔT (Model C cash rule)."""
    payables = ledger.payables
    max_due = max(t, max(map(_due_of, payables.values()), default=t))  # map: ~2x a generator, runs daily
    n = ledger.n_traders
    cash = ledger.cash
    defaulted = ledger.defaulted
    ids = ledger.ids
    events = ledger.events
    add = ledger.add_payable
    for debtor, creditor, amount, dist in settled:
        if defaulted[debtor] or defaulted[creditor]:
            continue
        new_due = max_due + dist
        p = add(debtor, creditor, amount, new_due, dist, None)
        if creditor >= n:  # vbt/dealer creditors lend the amount again, as far as their cash goes
            moved = min(amount, cash[creditor])
            cash[creditor] -= moved
            cash[debtor] += moved
            if moved != amount:
                ledger.log("RolloverPartial", debtor=ids[debtor], creditor=ids[creditor], amount=amount,
                           cash_transferred=moved, new_due_day=new_due, payable_id=p.cid, cash_transfer=True)
                continue
            cash_transfer = True
        else:
            cash_transfer = False
        events.append(
            {
                "kind": "PayableRolledOver",
                "day": t,
                "phase": "simulation",
                "debtor": ids[debtor],
                "creditor": ids[creditor],
                "amount": amount,
                "new_due_day": new_due,
                "maturity_distance": dist,
                "payable_id": p.cid,
                "cash_transfer": cash_transfer,
            }
        )
