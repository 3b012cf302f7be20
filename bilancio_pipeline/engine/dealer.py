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

Nothing of §4 is simplified. Where MODEL.md's prose and the original code differ, this follows
the code (checked by diffing event logs against the original's):

* the surplus buyer reserves 50% of its dues within the horizon (the balanced-dealer config
  default), not 100%; the post-trade check still requires cash >= all of them;
* a trader's obligations and tickets maturing today are dropped before trading, so the
  look-ahead [t, t+H] effectively starts tomorrow;
* sell and buy intentions are ordered by agent id as text (H1, H10, H11, ...) before the
  shuffle, as the original's intention cache (its "aggressive" preset) does;
* when a desk-held ticket moves to another maturity bucket, the desk of the new bucket becomes
  the payable's creditor of record, so a rollover of it lends cash from that desk, even for a
  claim a trader sold (the seller loses the rollover).

Speed without changing results: a trading round in which no trade executes leaves every state
unchanged, so all later rounds of that day would repeat it exactly. They are not re-evaluated;
only the random-number draws of their shuffles are replayed (so the order of later days stays
identical) and their rejections are counted. The between-round kernel recompute is skipped
because the kernel is already recomputed after every trade and is a pure function of state.
Measured: on 17 active runs of the original (the 4 reference cells and 12 more at n=50, rho 0.9
and 1, plus one at n=100, rho 0.8 with 315 trades; buys, pass-throughs and an own-debt buy-back
among them) the event logs are
identical (settlements, defaults, write-offs, reassignments, rollovers, trades, claim transfers,
mints) and so are the counts of rejected buys and sells, which the original logs one by one.

Conserving vs compat, measured at n=50, rho=1, seed 42 (trading effect = passive - active
delta_total; delta_clean effect in brackets): kappa 0.25/c 0.5/mu 0: -0.021 (-0.025) compat,
+0.014 (+0.010) conserving; kappa 0.5/c 1/mu 0.5: 0.239 (0.107) -> 0.051 (-0.011); kappa 1/c 2/
mu 1: 0.256 (0.145) -> 0.126 (0.077); kappa 2/c 1/mu 0.5: 0.139 (0.082) -> 0.139 (0.082).
The kappa 0.5 figures equal MODEL.md §11's for the original patched to conserve money.
"""

from __future__ import annotations

import functools
import math
import random
import re
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import numpy as np

from bilancio_pipeline.engine.params import RunParams
from bilancio_pipeline.engine.scenario import BUCKETS, bucket_of_day
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


def _threshold(n: int) -> int:
    """randbelow(n) accepts a 32-bit word w iff w >> (32 - k) < n, k = n.bit_length(), i.e. iff
    w < n << (32 - k)."""
    return n << (32 - n.bit_length())


@functools.lru_cache(maxsize=64)
def _threshold_table(limit: int) -> np.ndarray:
    """Sorted distinct acceptance thresholds of randbelow(n) for n = 2..limit."""
    return np.array(sorted({_threshold(n) for n in range(2, limit + 1)}), dtype=np.uint32)


@functools.lru_cache(maxsize=1024)
def _shuffle_pattern(size: int, limit: int) -> re.Pattern[str]:
    """A regex over word symbols (a word's rank among the thresholds of _threshold_table(limit))
    that matches exactly the words shuffle() consumes for a list of `size`: for each draw
    n = size..2, any rejected words, then one accepted word."""
    table = _threshold_table(limit).tolist()
    rank = {t: i for i, t in enumerate(table)}
    top = len(table)
    parts = []
    for n in range(size, 1, -1):
        r = rank[_threshold(n)]  # symbol s is accepted iff s <= r
        parts.append("[\\U%08x-\\U%08x]*[\\U00000000-\\U%08x]" % (r + 1, top, r))
    return re.compile("".join(parts))


class ShuffleRng:
    """`random.Random(seed).shuffle`, reproduced on numpy's MT19937 (the very same generator, so
    the permutations are identical), plus `skip_shuffles`, which advances the generator past
    many shuffles at C speed without performing them.

    shuffle() draws randbelow(n) for n = len..2; each draw takes 32-bit words w until
    w >> (32 - k) < n, k = n.bit_length()."""

    CHUNK = 1 << 16

    def __init__(self, seed: int):
        state = random.Random(seed).getstate()[1]
        self._bits = np.random.MT19937()
        self._bits.state = {"bit_generator": "MT19937", "state": {"key": np.array(state[:624], dtype=np.uint32), "pos": state[624]}}
        self._words = np.empty(0, dtype=np.uint32)
        self._pos = 0

    def _ensure(self, count: int) -> None:
        left = len(self._words) - self._pos
        if left < count:
            fresh = self._bits.random_raw(max(count - left, self.CHUNK)).astype(np.uint32)
            self._words = np.concatenate((self._words[self._pos:], fresh))
            self._pos = 0

    def _take(self, count: int) -> list[int]:
        self._ensure(count)
        return self._words[self._pos:self._pos + count].tolist()

    def shuffle(self, x: list) -> None:
        size = len(x)
        if size < 2:
            return
        words = self._take(4 * size + 64)
        k = 0
        for i in range(size - 1, 0, -1):
            n = i + 1
            shift = 32 - n.bit_length()
            while True:
                if k == len(words):  # (very rarely) more words are needed
                    self._pos += k
                    words, k = self._take(4 * size + 64), 0
                j = words[k] >> shift
                k += 1
                if j < n:
                    break
            x[i], x[j] = x[j], x[i]
        self._pos += k

    def skip_shuffles(self, rounds: int, sizes: tuple[int, ...]) -> None:
        """Advance as `rounds` x (one shuffle of each size in `sizes`) would. The words are
        turned into symbols (rank among the acceptance thresholds) and matched by a compiled
        regex per list size, so the scan runs in C."""
        sizes = tuple(size for size in sizes if size > 1)
        if not sizes or rounds <= 0:
            return
        limit = 1 << max(sizes).bit_length()  # a few table sizes serve every list size
        table = _threshold_table(limit)
        patterns = [_shuffle_pattern(size, limit).match for size in sizes]
        expected = rounds * sum(2 ** n.bit_length() / n for size in sizes for n in range(size, 1, -1))
        budget = int(expected + 8 * math.sqrt(expected)) + 64
        while True:
            self._ensure(budget)
            words = self._words[self._pos:self._pos + budget]
            text = np.searchsorted(table, words, side="right").astype("<u4").tobytes().decode("utf-32-le")
            pos = 0
            for _ in range(rounds):
                for match in patterns:
                    found = match(text, pos)
                    if found is None:
                        break
                    pos = found.end()
                else:
                    continue
                break
            else:
                self._pos += pos
                return
            budget *= 2  # ran out of words (rare): look further


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
    """A ring firm as the market sees it. `owned` are its receivables (tickets), `obligations`
    its own liabilities still to mature. The obligation figures below are fixed for the day's
    trading (obligations change only in the day's ticket bookkeeping before it), so they are
    computed once per day by `plan_day`."""

    __slots__ = ("agent", "cash", "owned", "obligations", "max_due", "dues", "owed")

    def __init__(self, agent: int):
        self.agent = agent
        self.cash = D0
        self.owned: list[Ticket] = []
        self.obligations: list[Ticket] = []
        self.max_due = D0  # largest amount falling due on one day of [t, t+H]
        self.dues = D0  # everything falling due in [t, t+H]
        self.owed = D0  # all remaining obligations (safety margin)

    def plan_day(self, day: int, horizon: int) -> None:
        by_day: dict[int, Decimal] = {}
        owed = D0
        last = day + horizon
        for t in self.obligations:
            owed += t.face
            if day <= t.maturity <= last:
                by_day[t.maturity] = by_day.get(t.maturity, D0) + t.face
        self.owed = owed
        self.dues = sum(by_day.values(), D0)
        self.max_due = max(by_day.values(), default=D0)

    def upcoming_shortfall(self) -> Decimal:
        """max over d in [t, t+H] of (due on d - cash), floored at 0."""
        short = self.max_due - self.cash
        return short if short > 0 else D0


class DealerMarket:
    """Dealer subsystem of one active run; `trading_phase(ledger, day)` runs before settlement."""

    def __init__(self, ledger: Ledger, params: RunParams):
        self.ledger = ledger
        self.compat = params.cash_accounting == "bilancio_compat"
        self.S = Decimal(str(params.face_value))
        self.rho = Decimal(str(params.outside_mid_ratio))
        self.prior = ledger.scenario.p_prior
        self.rng = ShuffleRng(DEALER_RNG_SEED)
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
        self.initial_equity = [self._equity(b) for b in range(3)]

    def _equity(self, b: int) -> Decimal:
        """A dealer desk's cash plus its inventory marked at the VBT mid (for the P&L report)."""
        d = self.dealers[b]
        return d.cash + self.vbts[b].M * sum((t.face for t in d.inventory), D0)

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
        return bool(tr.owned) and tr.max_due > tr.cash

    def _buy_budget(self, tr: Trader, day: int) -> Decimal | None:
        surplus = tr.cash - BUY_RESERVE_FRACTION * tr.dues
        return surplus / 2 if surplus > 0 else None

    def _trade(self, day: int) -> None:
        traders = self.traders
        for tr in traders:
            tr.plan_day(day, PLANNING_HORIZON)
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
        """Advance the RNG exactly as `rounds` x (shuffle(sells), shuffle(buys)) would."""
        self.rng.skip_shuffles(rounds, (n_sell, n_buy))

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
        shortfall = tr.upcoming_shortfall()
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
        if not self.compat and interior and dealer.cash < round(dealer.bid * t.face):
            # Paying the real price, the dealer may lack the cash the kernel's one-ticket check
            # (bid x S) did not see: the sale then goes through to the VBT, if it can pay.
            interior = False
            if vbt.cash < round(vbt.B * t.face):
                return False
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
        dealers = self.dealers
        # safety margin: cash + owned tickets at the dealer bid - every remaining obligation
        survival = D1 - self.p_default
        margin = tr.cash - tr.owed
        owned_value = D0  # summed ticket by ticket, like the original (same Decimal rounding)
        for o in tr.owned:
            margin += dealers[o.bucket].bid * o.face
            owned_value += survival * o.face
        if margin < 0:
            return False  # the original skips every bucket in this case
        for b in range(3):
            dealer = dealers[b]
            vbt = self.vbts[b]
            interior = can_interior_sell(dealer, S)
            source = dealer if interior else vbt
            if not source.inventory:
                continue
            unit_price = dealer.ask if interior else vbt.A
            t = source.first_to_sell()
            face = t.face
            # EV gate: EV >= ask*face + [0.01 + avg(p, prior) * max(0.75, 1 - cash share)] * face
            ev = survival * face
            total_position = tr.cash + (owned_value + ev)
            threshold = BUY_PREMIUM
            if total_position > 0 and tr.cash > 0:
                liquidity = max(LIQUIDITY_FACTOR_FLOOR, D1 - tr.cash / total_position)
                threshold += (self.p_default + self.prior) / 2 * liquidity
            elif total_position <= 0:
                self.stats["buy_rejected"] += 1
                continue
            if not ev >= unit_price * face + threshold * face:
                self.stats["buy_rejected"] += 1
                continue
            scaled = unit_price * face
            paid = scaled if self.compat else Decimal(round(scaled))
            if tr.cash < scaled or scaled > max_spend:
                continue
            cash_after = tr.cash - paid
            if cash_after < tr.dues or margin - paid + dealers[t.bucket].bid * face < 0:
                continue
            tr.owned.append(t)
            tr.cash = cash_after
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
        if not self.compat:
            # every trade moved whole units from one agent to another: apply them as transfers
            moves = [(e.agent, int(e.cash) - cash[e.agent]) for e in self.traders + self.dealers + self.vbts]
            if sum(change for _, change in moves) != 0:
                raise AssertionError("conserving cash accounting lost or created money")
            for agent, change in moves:
                cash[agent] += change
            return
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
        # desk cash is pooled daily, so only the total is meaningful (mark-to-mid, real face)
        stats["dealer_total_pnl"] = float(sum(self._equity(b) - self.initial_equity[b] for b in range(3)))
        stats["cash_accounting"] = "bilancio_compat" if self.compat else "conserving"
        return stats
