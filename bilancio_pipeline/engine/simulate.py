"""The day loop of the Kalecki ring (MODEL.md §3): settlement, defaults, reassignment, rollover.

Money is integer minor units held in plain lists indexed by agent; payables are small slotted
objects kept in one insertion-ordered dict (the original's contract order matters for creditor
weights, write-offs and reassignment) plus a per-due-day list in creation order and per-debtor
and per-holder indexes, so that a default touches only the defaulter's own contracts.

Two behaviours of the original that MODEL.md does not spell out are reproduced: a firm holding
its own payable (it bought the ticket back) cannot pay itself, so the payable defaults; and with
default_handling "fail-fast" the original aborts the run at the first default, which here ends
the day loop (stop_reason "default_fail_fast") so the metrics of the partial run stay available.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Context, Decimal
from operator import attrgetter
from typing import Any, Callable

from bilancio_pipeline.engine.scenario import Scenario

_DECIMAL_CONTEXT = Context(prec=28)  # used through its methods: independent of the caller's context


# Contract ids by serial, formatted once per process: a run creates hundreds of payables and
# every run numbers them from 1, so the same strings come back run after run. The list is
# replaced, never changed in place, so a reader in another thread always sees a whole one.
_CIDS: list[str] = []
_CIDS_MAX = 1 << 17  # serials beyond this (very long runs) are formatted each time


def _contract_id(serial: int) -> str:
    global _CIDS
    try:
        return _CIDS[serial]
    except IndexError:
        if serial >= _CIDS_MAX:
            return "PAY_%06d" % serial
        _CIDS = ["PAY_%06d" % i for i in range(min(2 * serial + 1024, _CIDS_MAX))]
        return _CIDS[serial]


class Payable:
    __slots__ = ("serial", "cid", "debtor", "creditor", "_holder", "amount", "due", "dist", "alias", "live", "_held_by")

    def __init__(self, serial: int, debtor: int, creditor: int, amount: int, due: int, dist: int, alias: str | None,
                 held_by: dict[int, set[int]] | None = None):
        self.serial = serial
        self.cid = _contract_id(serial)
        self.debtor = debtor
        self.creditor = creditor  # original creditor (the asset holder of record; rollover goes to it)
        self._holder = creditor  # current holder (changes when the claim is sold)
        self.amount = amount
        self.due = due
        self.dist = dist  # maturity distance, kept through rollover and reassignment
        self.alias = alias
        self.live = True
        self._held_by = held_by  # the ledger's serials per holder, kept in step by the holder setter

    # The holder is a property so that every sale (the dealer, or a test, assigning p.holder)
    # keeps the ledger's per-holder index right; the getter is a C attrgetter, nearly as fast
    # as a plain slot.
    holder = property(attrgetter("_holder"))

    @holder.setter
    def holder(self, agent: int) -> None:
        index = self._held_by
        if index is not None and self.live:
            index[self._holder].discard(self.serial)
            index[agent].add(self.serial)
        self._holder = agent


@dataclass(slots=True)  # slots: the day loop reads these attributes thousands of times a run
class Ledger:
    """Balance sheets of one run: cash per agent, live payables, defaults, and the event log."""

    scenario: Scenario
    ids: list[str]
    n_traders: int
    cash: list[int]
    defaulted: list[bool]
    payables: dict[int, Payable] = field(default_factory=dict)
    by_due: defaultdict[int, list[Payable]] = field(default_factory=lambda: defaultdict(list))
    # live payables per debtor (by serial) and the serials per current holder: a default looks up
    # the defaulter's liabilities and receivables, which would otherwise scan every live payable.
    # The holder index keeps serials, not payables, so payables and ledger form no reference
    # cycle and a finished run is freed at once.
    by_debtor: defaultdict[int, dict[int, Payable]] = field(default_factory=lambda: defaultdict(dict))
    by_holder: defaultdict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    events: list[dict[str, Any]] = field(default_factory=list)
    day: int = 0
    next_serial: int = 1
    cb_minted: int = 0  # cash the central bank issued (initial + any minted by the compat dealer)
    # for the accounting checks (engine/accounting.py): every agent's cash summed at the end of
    # each day, and the defaulters' receivables that left the ledger by reassignment
    money_by_day: list[int] = field(default_factory=list)
    replaced: int = 0
    defaults_today: int = 0
    settled_today: int = 0
    # settlement observations for the dealer's belief tracker: (day, issuer, defaulted)
    history: list[tuple[int, int, bool]] = field(default_factory=list)
    new_payables: list[Payable] = field(default_factory=list)  # created since the dealer last looked
    # only the active regime's dealer reads new_payables and history: without it neither is kept
    track_new: bool = True

    def add_payable(self, debtor: int, creditor: int, amount: int, due: int, dist: int, alias: str | None) -> Payable:
        serial = self.next_serial
        self.next_serial = serial + 1
        p = Payable(serial, debtor, creditor, amount, due, dist, alias, self.by_holder)
        self.payables[serial] = p
        self.by_debtor[debtor][serial] = p
        self.by_holder[creditor].add(serial)
        self.by_due[due].append(p)
        if self.track_new:
            self.new_payables.append(p)
        return p

    def remove(self, p: Payable) -> None:
        p.live = False
        serial = p.serial
        del self.payables[serial]
        del self.by_debtor[p.debtor][serial]
        self.by_holder[p._holder].remove(serial)

    def liabilities(self, agent: int) -> list[Payable]:
        """The agent's live payables in creation order."""
        owed = self.by_debtor.get(agent)
        return list(owed.values()) if owed else []

    def receivables(self, agent: int) -> list[Payable]:
        """The live payables the agent holds, in creation order (serials are issued in that order)."""
        held = self.by_holder.get(agent)
        if not held:
            return []
        payables = self.payables
        return [payables[serial] for serial in sorted(held)]

    def latest_due(self, t: int) -> int:
        """max(t, latest due day of a live payable), the MAX of the rollover rule.

        Every live payable due after t is still in its by_due list (a day's list is taken only
        when that day is settled), so walking the few due days after t, newest first, gives the
        same answer as looking at every live payable."""
        by_due = self.by_due
        for day in sorted(by_due, reverse=True):
            if day <= t:
                break
            for p in by_due[day]:
                if p.live:
                    return day
        return t

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
    add = ledger.add_payable
    for debtor, creditor, _, amount, due_day, alias in scenario.payables:
        p = add(debtor, creditor, amount, due_day, due_day, alias)
        events.append(
            {
                "kind": "PayableCreated",
                "day": 0,
                "phase": "setup",
                "debtor": ids[debtor],
                "creditor": ids[creditor],
                "amount": amount,
                "due_day": due_day,
                "maturity_distance": due_day,
                "payable_id": p.cid,
                "alias": alias,
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
        ledger.money_by_day.append(sum(ledger.cash))
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
    track = ledger.track_new
    events = ledger.events
    settled: list[tuple[int, int, int, int]] = []
    for p in due:
        debtor = p.debtor
        if not p.live or defaulted[debtor]:
            continue
        amount = p.amount
        holder = p.holder
        available = cash[debtor]
        if holder == debtor and amount > 0:
            # A firm that bought back its own debt: the original's cash transfer to oneself is
            # refused, so nothing is paid and the payable defaults.
            available = 0
        if available >= amount:
            cash[debtor] = available - amount
            cash[holder] += amount
            ledger.remove(p)
            cid = p.cid
            events.append(
                {
                    "kind": "PayableSettled",
                    "day": t,
                    "phase": "simulation",
                    "pid": cid,
                    "contract_id": cid,
                    "alias": p.alias,
                    "debtor": ids[debtor],
                    "creditor": ids[holder],
                    "amount": amount,
                }
            )
            if track:
                history.append((t, debtor, False))
            settled.append((debtor, p.creditor, amount, p.dist))
            continue
        if fail_fast:
            ledger.settled_today += len(settled)
            ledger.log("ObligationDefaulted", contract_id=p.cid, alias=p.alias, debtor=ids[debtor], creditor=ids[holder],
                       shortfall=amount - available, amount_paid=0, original_amount=amount, amount=amount - available)
            ledger.defaults_today += 1
            return None
        # Default: the partial payment stays with the holder (no rollback in expel mode).
        paid = available
        cash[debtor] -= paid
        cash[holder] += paid
        default_payable(ledger, p, paid, t)
    ledger.settled_today += len(settled)
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
    if ledger.track_new:
        ledger.history.append((t, debtor, True))
    reassign_receivables(ledger, debtor, weights, t)


def creditor_weights(ledger: Ledger, agent: int) -> dict[int, Decimal]:
    """Share of the agent's outstanding liabilities owed to each current holder (sums to 1)."""
    owed = ledger.by_debtor.get(agent)
    if not owed:
        return {}
    claims: dict[int, int] = {}
    for p in owed.values():
        holder = p.holder
        claims[holder] = claims.get(holder, 0) + p.amount
    total = sum(claims.values())
    if total <= 0:
        return {}
    divide = _DECIMAL_CONTEXT.divide
    dtotal = Decimal(total)
    return {holder: divide(Decimal(amount), dtotal) for holder, amount in claims.items()}


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
    events = ledger.events
    for p in liabilities:
        events.append({"contract_id": p.cid, "alias": p.alias, "debtor": ids[agent], "creditor": ids[p.creditor],
                       "contract_kind": "payable", "amount": p.amount, "due_day": p.due,
                       "kind": "ObligationWrittenOff", "day": ledger.day, "phase": "simulation"})
        ledger.remove(p)
    ledger.defaults_today += len(liabilities)


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
    receivables = [p for p in ledger.receivables(agent) if p.debtor != agent and not defaulted[p.debtor]]
    if not receivables:
        return
    ledger.replaced += len(receivables)  # each leaves the ledger below, re-issued or cancelled
    if not weights:
        for p in receivables:  # nobody to pass them to: the debt is cancelled
            ledger.remove(p)
        return
    ids = ledger.ids
    sole = next(iter(weights)) if len(weights) == 1 else None
    multiply = _DECIMAL_CONTEXT.multiply
    events = ledger.events
    day = ledger.day
    for r in receivables:
        debtor = r.debtor
        if sole == debtor:
            ledger.log("RingCollapsed", defaulted_agent=ids[agent], remaining_agent=ids[debtor], removed_payable=r.cid)
            ledger.remove(r)
            continue
        ledger.remove(r)
        new_due = t + r.dist
        original = Decimal(r.amount)
        amounts = [(creditor, int(multiply(original, w)), w) for creditor, w in weights.items() if creditor != debtor]
        for creditor, amount, w in amounts:
            if amount < 1:
                continue
            p = ledger.add_payable(debtor, creditor, amount, new_due, r.dist, None)
            # the two events of each new claim, keys in the order ledger.log gives them
            events.append({"defaulted_agent": ids[agent], "debtor": ids[debtor], "new_creditor": ids[creditor],
                           "old_payable": r.cid, "new_payable": p.cid, "amount": amount, "weight": float(w),
                           "maturity_distance": r.dist, "new_due_day": new_due,
                           "kind": "ReceivableReassigned", "day": day, "phase": "simulation"})
            events.append({"contract_id": p.cid, "debtor": ids[debtor], "creditor": ids[creditor], "amount": amount,
                           "due_day": new_due, "maturity_distance": r.dist, "reason": "receivable_reassignment",
                           "kind": "PayableCreated", "day": day, "phase": "simulation"})


def roll_over(ledger: Ledger, t: int, settled: list[tuple[int, int, int, int]]) -> None:
    """Re-issue each repaid payable to its original creditor, due MAX + ΔT (Model C cash rule)."""
    max_due = ledger.latest_due(t)
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
            moved = amount if amount <= cash[creditor] else cash[creditor]
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
