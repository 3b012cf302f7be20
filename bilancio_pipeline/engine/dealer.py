"""The secondary market of the active regime (MODEL.md §4): tickets, VBT anchors, the L1 dealer
kernel per maturity bucket, and the daily trading rounds of liquidity-driven sellers and
surplus buyers with their EV gates.

Prices and desk cash are 28-digit Decimals, as in the original, so that every accept/reject
comparison comes out the same. Two cash accountings (§4.6):

* ``bilancio_compat``: the desk's cash moves by the *unit* price while the trader receives
  price x face; the end-of-phase reconciliation mints (or retires) the difference, exactly as
  the original does, including its rounding of each agent's delta and the Decimal desk pooling;
* ``conserving``: the desk pays the trader price x face rounded to a whole minor unit, the VBT
  credit facility moves whole units, and desk pooling splits integer cash (remainder to the
  shorter desks first), so no money is created or destroyed.

Speed without changing results: a trading round in which no trade executes leaves every state
unchanged, so all later rounds of that day would repeat it exactly. They are not re-evaluated;
only the random-number draws of their shuffles are replayed (so the order of later days stays
identical) and their rejections are counted. The between-round kernel recompute is skipped
because the kernel is already recomputed after every trade and is a pure function of state.
"""

from __future__ import annotations

import random
import numpy as np
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from bilancio_pipeline.engine.params import RunParams
from bilancio_pipeline.engine.scenario import BUCKETS, bucket_of_day, kappa_prior
from bilancio_pipeline.engine.simulate import Ledger, Payable

D0 = Decimal(0)
D1 = Decimal(1)
D2 = Decimal(2)
M_MIN = Decimal("0.02")
LAYOFF_THRESHOLD = Decimal("0.7")
BASE_SPREAD = (Decimal("0.04"), Decimal("0.08"), Decimal("0.12"))
KAPPA_SPREAD_STRENGTH = Decimal("0.5")
URGENCY_SENSITIVITY = Decimal("0.30")
SELL_PREMIUM = Decimal("0")  # the trader profile overrides the configured 0.02 for sellers
BUY_PREMIUM = Decimal("0.01")
LIQUIDITY_FACTOR_FLOOR = Decimal("0.75")
LOOKBACK_DAYS = 5
PLANNING_HORIZON = 10
BUY_RESERVE_FRACTION = Decimal("0.5")  # the balanced-dealer config default (the profile's own default is 1.0)
TRADING_ROUNDS = 100
DEALER_RNG_SEED = 42


def _peek_words(rng: random.Random, count: int) -> list[int]:
    """The next `count` 32-bit outputs of rng, without advancing it."""
    probe = random.Random()
    probe.setstate(rng.getstate())
    return np.frombuffer(probe.getrandbits(32 * count).to_bytes(4 * count, "little"), dtype="<u4").tolist()


def _count_words(words: list[int], thresholds: list[int], rounds: int) -> int | None:
    """Words consumed by `rounds` passes of rejection draws with these acceptance thresholds,
    or None when `words` runs out first."""
    stream = iter(words)
    for _ in range(rounds):
        for threshold in thresholds:
            for word in stream:
                if word < threshold:
                    break
            else:
                return None
    return len(words) - len(list(stream))


class Ticket:
    __slots__ = ("payable", "name", "issuer", "owner", "face", "maturity", "bucket", "serial")

    def __init__(self, payable: Payable, owner: int, bucket: int, serial: int):
        self.payable = payable
        self.name = "TKT_" + payable.cid
        self.issuer = payable.debtor
        self.owner = owner
        self.face = Decimal(payable.amount)
        self.maturity = payable.due
        self.bucket = bucket
        self.serial = serial


class Desk:
    """A dealer (with kernel state) or a VBT of one bucket; `agent` is its ledger index."""

    __slots__ = ("agent", "inventory", "cash", "M", "O", "A", "B", "x", "K", "X", "bid", "ask", "pinned", "_first")

    def __init__(self, agent: int):
        self.agent = agent
        self.inventory: list[Ticket] = []  # change only through add()/discard(): they reset the cache
        self._first: Ticket | None = None
        self.cash = D0
        self.M = self.O = self.A = self.B = D0
        self.x = self.X = self.bid = self.ask = D0
        self.K = 0
        self.pinned = False

    def add(self, t: Ticket) -> None:
        self.inventory.append(t)
        self._first = None

    def discard(self, t: Ticket) -> None:
        if t in self.inventory:
            self.inventory.remove(t)
            self._first = None

    def first_to_sell(self) -> Ticket:
        """Earliest maturity, then lowest serial (the original's choice when no issuer is preferred)."""
        if self._first is None:
            self._first = min(self.inventory, key=lambda x: (x.maturity, x.serial))
        return self._first


def recompute_quotes(vbt: Desk) -> None:
    half = vbt.O / 2
    vbt.A = min(vbt.M + half, D1)
    vbt.B = max(vbt.M - half, D0)


def recompute_kernel(dealer: Desk, vbt: Desk, S: Decimal) -> None:
    """L1 dealer kernel (§4.3): capacity from mid-valued equity, inventory-tilted midline."""
    M = vbt.M
    O = vbt.O
    dealer.x = S * len(dealer.inventory)
    if M <= M_MIN:
        dealer.K = 0
        dealer.X = D0
        dealer.bid = vbt.B
        dealer.ask = vbt.A
        dealer.pinned = True
        return
    dealer.pinned = False
    V = M * dealer.x + dealer.cash
    K = int((V / (M * S)).quantize(D1, rounding=ROUND_FLOOR))
    dealer.K = K
    X = S * K
    dealer.X = X
    lam = S / (X + S) if X + S > 0 else D1
    inside = lam * O
    if X + 2 * S > 0:
        midline = M - (O / (X + 2 * S)) * (dealer.x - X / 2)
    else:
        midline = M
    half = inside / 2
    dealer.bid = min(max(vbt.B, midline - half), D1)
    dealer.ask = max(dealer.bid, min(vbt.A, midline + half, D1))


def can_interior_buy(dealer: Desk, S: Decimal) -> bool:
    return dealer.x + S <= dealer.X and dealer.cash >= dealer.bid * S


def can_interior_sell(dealer: Desk, S: Decimal) -> bool:
    return dealer.x >= S and dealer.X > 0


class Trader:
    __slots__ = ("agent", "cash", "owned", "obligations")

    def __init__(self, agent: int):
        self.agent = agent
        self.cash = D0
        self.owned: list[Ticket] = []
        self.obligations: list[Ticket] = []

    def due_on(self, day: int) -> Decimal:
        return sum((t.face for t in self.obligations if t.maturity == day), D0)

    def upcoming_shortfall(self, day: int, horizon: int) -> Decimal:
        worst = D0
        cash = self.cash
        for d in range(day, day + horizon + 1):
            short = self.due_on(d) - cash
            if short > worst:
                worst = short
        return worst

    def dues_within(self, day: int, horizon: int) -> Decimal:
        last = day + horizon
        return sum((t.face for t in self.obligations if day <= t.maturity <= last), D0)


class DealerMarket:
    """Dealer subsystem of one active run; `trading_phase(ledger, day)` runs before settlement."""

    def __init__(self, ledger: Ledger, params: RunParams):
        self.ledger = ledger
        self.compat = params.cash_accounting == "bilancio_compat"
        self.S = Decimal(str(params.face_value))
        self.rho = Decimal(str(params.outside_mid_ratio))
        self.prior = ledger.scenario.p_prior
        self.rng = random.Random(DEALER_RNG_SEED)
        n = ledger.n_traders
        self.n = n
        kappa = ledger.scenario.kappa
        stress = max(D0, D1 - kappa) / (D1 + kappa)
        self.base_spread = [b * (D1 + KAPPA_SPREAD_STRENGTH * stress) for b in BASE_SPREAD]
        self.dealers = [Desk(ledger.scenario.dealer_index(b)) for b in range(3)]
        self.vbts = [Desk(ledger.scenario.vbt_index(b)) for b in range(3)]
        self.traders = [Trader(i) for i in range(n)]
        # trader order of the original's intention queues: sorted by agent id as text
        self.sorted_traders = sorted(range(n), key=lambda i: ledger.ids[i])
        self.sort_position = {agent: pos for pos, agent in enumerate(self.sorted_traders)}
        self.tickets: dict[int, Ticket] = {}  # by payable serial, in creation order
        self.tracked: set[int] = set()
        self.serial = 0
        self.stats = {
            "total_trades": 0, "total_sell_trades": 0, "total_buy_trades": 0, "interior_trades": 0,
            "passthrough_trades": 0, "sell_rejected": 0, "buy_rejected": 0, "trade_volume_cash": D0,
            "trade_volume_face": 0, "vbt_facility_injections": 0, "cash_minted": 0, "cash_retired": 0,
            "trading_rounds": 0, "replayed_rounds": 0,
        }
        self._initialise()

    # ---------------------------------------------------------------- set-up
    def _initialise(self) -> None:
        ledger = self.ledger
        for p in ledger.payables.values():  # every initial payable becomes a ticket (§4.1)
            if p.amount <= 0:
                continue
            t = Ticket(p, p.holder, bucket_of_day(max(0, p.due)), self.serial)
            self.serial += 1
            self.tickets[p.serial] = t
            self.tracked.add(p.serial)
        ledger.new_payables.clear()
        n = self.n
        for t in self.tickets.values():
            if t.owner >= n:
                desk_bucket = (t.owner - n) // 2
                (self.vbts if (t.owner - n) % 2 == 0 else self.dealers)[desk_bucket].add(t)
        for b in range(3):
            vbt = self.vbts[b]
            vbt.cash = Decimal(ledger.cash[vbt.agent])
            vbt.M = self._mid(self.prior)
            vbt.O = self.base_spread[b]
            recompute_quotes(vbt)
            dealer = self.dealers[b]
            dealer.cash = Decimal(ledger.cash[dealer.agent])
            recompute_kernel(dealer, vbt, self.S)
        for t in self.tickets.values():
            if t.owner < n:
                self.traders[t.owner].owned.append(t)
            if t.issuer < n:
                self.traders[t.issuer].obligations.append(t)
        self.initial_equity = [d.cash + self.vbts[b].M * len(d.inventory) * self.S for b, d in enumerate(self.dealers)]

    def _mid(self, p_default: Decimal) -> Decimal:
        initial = self.rho * (D1 - self.prior)
        raw = self.rho * (D1 - p_default)
        return initial + (raw - initial)

    def default_probability(self, day: int) -> Decimal:
        """Laplace-smoothed default frequency over settlement attempts of days >= day-5 (§4.2)."""
        start = day - LOOKBACK_DAYS
        total = defaults = 0
        for d, _, defaulted in reversed(self.ledger.history):
            if d < start:
                break
            total += 1
            defaults += defaulted
        if total == 0:
            return self.prior
        return (D1 + Decimal(defaults)) / (D2 + Decimal(total))

    # ---------------------------------------------------------------- one day
    def trading_phase(self, ledger: Ledger, day: int) -> None:
        n = self.n
        for tr in self.traders:
            tr.cash = Decimal(ledger.cash[tr.agent])
        for desk in self.dealers + self.vbts:
            desk.cash = Decimal(ledger.cash[desk.agent])
        self._drop_orphans()
        self._ingest(day)
        self._age_tickets(day)
        self._pool_desk_cash()
        p_default = self.default_probability(day)
        self.p_default = p_default
        for b in range(3):
            vbt = self.vbts[b]
            vbt.M = self._mid(p_default)
            vbt.O = self.base_spread[b]
            recompute_quotes(vbt)
            recompute_kernel(self.dealers[b], vbt, self.S)
        self._trade(day)
        self._sync_to_ledger(day)

    def _drop_orphans(self) -> None:
        dead = [serial for serial, t in self.tickets.items() if not t.payable.live]
        for serial in dead:
            self._detach(self.tickets.pop(serial))

    def _detach(self, t: Ticket) -> None:
        for desk in (self.dealers[t.bucket], self.vbts[t.bucket]):
            desk.discard(t)
        if t.owner < self.n and t in self.traders[t.owner].owned:
            self.traders[t.owner].owned.remove(t)
        if t.issuer < self.n and t in self.traders[t.issuer].obligations:
            self.traders[t.issuer].obligations.remove(t)

    def _ingest(self, day: int) -> None:
        """New payables (rollover, reassignment) become tickets; desk-held ones go to the desk of
        their bucket, which then becomes the payable's creditor of record (as in the original)."""
        ledger = self.ledger
        if not ledger.new_payables:
            return
        pending = sorted((p for p in ledger.new_payables if p.live), key=lambda p: p.serial)  # creation order
        ledger.new_payables = []
        n = self.n
        defaulted = ledger.defaulted
        for p in pending:
            if p.serial in self.tracked or p.amount <= 0 or defaulted[p.debtor]:
                continue
            tau = p.due - day
            if tau <= 0:
                ledger.new_payables.append(p)  # matures today: no ticket, like the original
                continue
            bucket = bucket_of_day(tau)
            t = Ticket(p, p.holder, bucket, self.serial)
            self.serial += 1
            self.tickets[p.serial] = t
            self.tracked.add(p.serial)
            owner = p.holder
            if owner >= n:
                desk_list = self.vbts if (owner - n) % 2 == 0 else self.dealers
                desk = desk_list[bucket]
                t.owner = desk.agent
                desk.add(t)
                if desk.agent != owner:
                    p.creditor = p.holder = desk.agent
            else:
                self.traders[owner].owned.append(t)
            if t.issuer < n:
                self.traders[t.issuer].obligations.append(t)

    def _age_tickets(self, day: int) -> None:
        n = self.n
        matured = []
        for serial, t in self.tickets.items():
            tau = t.maturity - day
            if tau <= 0:
                matured.append(serial)
                self._detach(t)
                continue
            bucket = bucket_of_day(tau)
            if bucket == t.bucket:
                continue
            old = t.bucket
            for desk in (self.dealers[old], self.vbts[old]):
                desk.discard(t)
            t.bucket = bucket
            if t.owner >= n:
                desk_list = self.vbts if (t.owner - n) % 2 == 0 else self.dealers
                desk = desk_list[bucket]
                p = t.payable
                if desk.agent != t.owner:
                    p.creditor = p.holder = desk.agent  # the desk of the new bucket becomes creditor
                t.owner = desk.agent
                desk.add(t)
        for serial in matured:
            del self.tickets[serial]

    def _pool_desk_cash(self) -> None:
        for desks in (self.dealers, self.vbts):
            total = sum((d.cash for d in desks), D0)
            if self.compat:
                share = total / Decimal(len(desks))
                for d in desks:
                    d.cash = share
            else:
                whole = int(total)
                base, extra = divmod(whole, len(desks))
                for i, d in enumerate(desks):
                    d.cash = Decimal(base + (1 if i < extra else 0))

    # ---------------------------------------------------------------- trading rounds
    def _sell_intent(self, tr: Trader, day: int) -> bool:
        return bool(tr.owned) and tr.upcoming_shortfall(day, PLANNING_HORIZON) > 0

    def _buy_budget(self, tr: Trader, day: int) -> Decimal | None:
        surplus = tr.cash - BUY_RESERVE_FRACTION * tr.dues_within(day, PLANNING_HORIZON)
        return surplus / 2 if surplus > 0 else None

    def _trade(self, day: int) -> None:
        traders = self.traders
        order = self.sorted_traders
        sells = [i for i in order if self._sell_intent(traders[i], day)]
        buys = {i: b for i in order if (b := self._buy_budget(traders[i], day)) is not None}
        rng = self.rng
        stats = self.stats
        for round_no in range(TRADING_ROUNDS):
            buy_ids = list(buys)
            if not sells and not buy_ids:
                break
            stats["trading_rounds"] += 1
            sell_order = list(sells)
            buy_order = buy_ids
            rng.shuffle(sell_order)
            rng.shuffle(buy_order)
            sell_rejected_before = stats["sell_rejected"]
            buy_rejected_before = stats["buy_rejected"]
            budgets = {d.agent: d.cash for d in self.dealers + self.vbts}
            traded: list[int] = []
            paired = min(len(sell_order), len(buy_order))
            for k in range(paired):
                if self._sell(sell_order[k], day, budgets):
                    traded.append(sell_order[k])
                if self._buy(buy_order[k], day, budgets, buys[buy_order[k]]):
                    traded.append(buy_order[k])
            for k in range(paired, len(sell_order)):
                if self._sell(sell_order[k], day, budgets):
                    traded.append(sell_order[k])
            for k in range(paired, len(buy_order)):
                if self._buy(buy_order[k], day, budgets, buys[buy_order[k]]):
                    traded.append(buy_order[k])
            if not traded:
                # Nothing changed: the remaining rounds would repeat this one exactly.
                remaining = TRADING_ROUNDS - round_no - 1
                self._replay_shuffles(remaining, len(sell_order), len(buy_order))
                stats["replayed_rounds"] += remaining
                stats["trading_rounds"] += remaining
                stats["sell_rejected"] += (stats["sell_rejected"] - sell_rejected_before) * remaining
                stats["buy_rejected"] += (stats["buy_rejected"] - buy_rejected_before) * remaining
                break
            # only traders that traded can change their intentions (the original's cache)
            changed = set(traded)
            for i in changed:
                if i in sells:
                    sells.remove(i)
                buys.pop(i, None)
            for i in changed:
                tr = traders[i]
                if self._sell_intent(tr, day):
                    sells.append(i)
                budget = self._buy_budget(tr, day)
                if budget is not None:
                    buys[i] = budget
            position = self.sort_position
            sells.sort(key=position.__getitem__)
            buys = {i: buys[i] for i in sorted(buys, key=position.__getitem__)}

    def _replay_shuffles(self, rounds: int, n_sell: int, n_buy: int) -> None:
        """Advance the RNG exactly as `rounds` x (shuffle(sells), shuffle(buys)) would.

        shuffle() draws randbelow(n) for n = size .. 2; each draw takes one 32-bit word w and
        accepts it when w >> (32 - k) < n, k = n.bit_length(), else takes another word. The
        words are read in bulk from a copy of the generator, the accepted positions found, and
        the real generator advanced by that many words with a single getrandbits call."""
        thresholds = [n << (32 - n.bit_length()) for size in (n_sell, n_buy) for n in range(size, 1, -1)]
        if not thresholds or rounds <= 0:
            return
        draws = len(thresholds) * rounds
        budget = 2 * draws + 256
        while True:
            words = _peek_words(self.rng, budget)
            used = _count_words(words, thresholds, rounds)
            if used is not None:
                break
            budget *= 2
        self.rng.getrandbits(32 * used)

    def _ev(self, t: Ticket) -> Decimal:
        return (D1 - self.p_default) * t.face

    def _safety_margin(self, tr: Trader) -> Decimal:
        margin = tr.cash
        for t in tr.owned:
            margin += self.dealers[t.bucket].bid * t.face
        for t in tr.obligations:
            margin -= t.face
        return margin

    def _sell(self, i: int, day: int, budgets: dict[int, Decimal]) -> bool:
        """One liquidity-driven sell attempt of trader i's first ticket (§4.4 step 4)."""
        tr = self.traders[i]
        if not tr.owned:
            return False
        t = tr.owned[0]
        b = t.bucket
        dealer = self.dealers[b]
        vbt = self.vbts[b]
        S = self.S
        interior = can_interior_buy(dealer, S)
        payer = dealer if interior else vbt
        if budgets.get(payer.agent, D0) < (dealer.bid if interior else vbt.B) * t.face:
            return False
        # EV gate: bid*face >= EV + threshold*face, threshold lower when the seller is short
        asset_value = sum((self._ev(o) for o in tr.owned), D0)
        shortfall = tr.upcoming_shortfall(day, PLANNING_HORIZON)
        wealth = tr.cash + asset_value
        if wealth <= 0:
            threshold = Decimal("-1.0")
        elif shortfall <= 0:
            threshold = SELL_PREMIUM
        else:
            threshold = SELL_PREMIUM - URGENCY_SENSITIVITY * (shortfall / wealth)
        if not dealer.bid * t.face >= self._ev(t) + threshold * t.face:
            self.stats["sell_rejected"] += 1
            return False
        # execute: interior at the dealer bid, else through to the VBT at B
        interior = can_interior_buy(dealer, S)
        if not interior:
            ratio = Decimal(len(dealer.inventory)) / Decimal(dealer.K) if dealer.K > 0 else D0
            if ratio < LAYOFF_THRESHOLD:
                needed = dealer.bid * S if self.compat else Decimal(round(dealer.bid * S))
                if vbt.cash >= needed:  # VBT credit facility
                    vbt.cash -= needed
                    dealer.cash += needed
                    self.stats["vbt_facility_injections"] += 1
                    recompute_kernel(dealer, vbt, S)
                    interior = can_interior_buy(dealer, S)
        desk = dealer if interior else vbt
        unit_price = dealer.bid if interior else vbt.B
        desk.add(t)
        scaled = unit_price * t.face
        if self.compat:
            desk.cash -= unit_price  # the original's unit/face mismatch
            received = scaled
        else:
            received = Decimal(round(scaled))
            desk.cash -= received
        t.owner = desk.agent
        recompute_kernel(dealer, vbt, S)
        tr.owned.remove(t)
        tr.cash += received
        budgets[desk.agent] = budgets.get(desk.agent, D0) - scaled
        self._record(day, i, "sell", t, received, unit_price, not interior)
        return True

    def _buy(self, i: int, day: int, budgets: dict[int, Decimal], max_spend: Decimal) -> bool:
        """One surplus buy attempt, buckets short -> mid -> long (§4.4 step 5)."""
        tr = self.traders[i]
        S = self.S
        for b in range(3):
            dealer = self.dealers[b]
            vbt = self.vbts[b]
            if not dealer.inventory and not vbt.inventory:
                continue
            if self._safety_margin(tr) < 0:
                continue
            interior = can_interior_sell(dealer, S)
            source = dealer if interior else vbt
            if not source.inventory:
                continue
            unit_price = dealer.ask if interior else vbt.A
            t = source.first_to_sell()
            # EV gate: EV >= ask*face + [0.01 + avg(p, prior) * max(0.75, 1 - cash share)] * face
            ev = self._ev(t)
            asset_value = sum((self._ev(o) for o in tr.owned), D0) + ev
            threshold = BUY_PREMIUM
            total_position = tr.cash + asset_value
            accepted = True
            if total_position > 0 and tr.cash > 0:
                cash_ratio = tr.cash / total_position
                blended = (self.p_default + self.prior) / 2
                threshold += blended * max(LIQUIDITY_FACTOR_FLOOR, D1 - cash_ratio)
            elif total_position <= 0:
                accepted = False
            if not accepted or not ev >= unit_price * t.face + threshold * t.face:
                self.stats["buy_rejected"] += 1
                continue
            scaled = unit_price * t.face
            paid = scaled if self.compat else Decimal(round(scaled))
            if tr.cash < scaled or scaled > max_spend:
                continue
            tr.owned.append(t)
            tr.cash -= paid
            if tr.cash < tr.dues_within(day, PLANNING_HORIZON) or self._safety_margin(tr) < 0:
                tr.cash += paid
                tr.owned.pop()
                continue
            source.discard(t)
            source.cash += unit_price if self.compat else paid
            t.owner = tr.agent
            recompute_kernel(dealer, vbt, S)
            budgets[source.agent] = budgets.get(source.agent, D0) + scaled
            self._record(day, i, "buy", t, paid, unit_price, not interior)
            return True
        return False

    def _record(self, day: int, i: int, side: str, t: Ticket, price: Decimal, unit_price: Decimal, passthrough: bool) -> None:
        stats = self.stats
        stats["total_trades"] += 1
        stats["total_sell_trades" if side == "sell" else "total_buy_trades"] += 1
        stats["passthrough_trades" if passthrough else "interior_trades"] += 1
        stats["trade_volume_cash"] += price
        stats["trade_volume_face"] += t.payable.amount
        self.ledger.events.append(
            {
                "kind": "dealer_trade",
                "day": day,
                "phase": "simulation",
                "trader": self.ledger.ids[i],
                "side": side,
                "ticket_id": t.name,
                "bucket": BUCKETS[t.bucket],
                "price": float(price),
                "unit_price": float(unit_price),
                "face": t.payable.amount,
                "is_passthrough": passthrough,
                "is_liquidity_driven": side == "sell",
            }
        )

    # ---------------------------------------------------------------- back to the ledger
    def _sync_to_ledger(self, day: int) -> None:
        ledger = self.ledger
        ids = ledger.ids
        for t in self.tickets.values():
            p = t.payable
            if p.live and p.holder != t.owner:
                ledger.events.append(
                    {"kind": "ClaimTransferredDealer", "day": day, "phase": "simulation", "payable_id": p.cid,
                     "from_holder": ids[p.holder], "to_holder": ids[t.owner], "amount": p.amount, "due_day": p.due}
                )
                p.holder = t.owner
        cash = ledger.cash
        for entity in self.traders + self.dealers + self.vbts:
            main = cash[entity.agent]
            delta = entity.cash - main
            if delta == 0:
                continue
            if delta > 0:
                amount = round(delta)  # the original mints (and logs) even when this rounds to 0
                if True:
                    cash[entity.agent] += amount
                    ledger.cb_minted += amount
                    self.stats["cash_minted"] += amount
                    ledger.events.append({"kind": "CashMinted", "day": day, "phase": "simulation", "to": ids[entity.agent], "amount": amount})
            else:
                amount = round(min(-delta, Decimal(main)))
                if amount > 0:
                    cash[entity.agent] -= amount
                    ledger.cb_minted -= amount
                    self.stats["cash_retired"] += amount
                    ledger.events.append({"kind": "CashRetired", "day": day, "phase": "simulation", "frm": ids[entity.agent], "amount": amount})

    def report(self) -> dict[str, Any]:
        """dealer_metrics.json: trade counts and volumes, rejections, desk P&L."""
        stats = dict(self.stats)
        stats["trade_volume_cash"] = float(stats["trade_volume_cash"])
        pnl = []
        for b, d in enumerate(self.dealers):
            equity = d.cash + self.vbts[b].M * sum((t.face for t in d.inventory), D0)
            pnl.append(float(equity - self.initial_equity[b]))
        stats["dealer_pnl_by_bucket"] = dict(zip(BUCKETS, pnl))
        stats["dealer_total_pnl"] = sum(pnl)
        stats["cash_accounting"] = "bilancio_compat" if self.compat else "conserving"
        return stats
