"""Dealer-market building blocks (MODEL.md §4): the reproduced shuffle RNG and the L1 kernel."""

import random
from decimal import Decimal

from bilancio_pipeline.engine.dealer import Desk, ShuffleRng, can_interior_buy, recompute_kernel, recompute_quotes


def test_shuffles_equal_pythons_random_and_skipping_equals_shuffling():
    draws = random.Random(11)
    for seed in range(60):
        ref, ours = random.Random(seed), ShuffleRng(seed)
        for _ in range(4):
            a, b, rounds = draws.randrange(0, 70), draws.randrange(0, 70), draws.randrange(0, 40)
            for _ in range(rounds):
                ref.shuffle(list(range(a)))
                ref.shuffle(list(range(b)))
            ours.skip_shuffles(rounds, (a, b))
            x = list(range(draws.randrange(0, 90)))
            y = list(x)
            ref.shuffle(x)
            ours.shuffle(y)
            assert x == y


def _desk_pair(M, O, cash, tickets):
    vbt, dealer = Desk(0), Desk(1)
    vbt.M, vbt.O = Decimal(M), Decimal(O)
    recompute_quotes(vbt)
    dealer.cash = Decimal(cash)
    dealer.inventory = [object()] * tickets
    return dealer, vbt


def test_vbt_quotes_are_clipped_to_par_and_zero():
    vbt = Desk(0)
    vbt.M, vbt.O = Decimal("0.99"), Decimal("0.1")
    recompute_quotes(vbt)
    assert (vbt.A, vbt.B) == (Decimal(1), Decimal("0.94"))
    vbt.M = Decimal("0.01")
    recompute_quotes(vbt)
    assert vbt.B == 0


def test_kernel_capacity_width_and_inventory_tilt():
    S = Decimal(20)
    dealer, vbt = _desk_pair("0.9", "0.06", "180", 0)
    recompute_kernel(dealer, vbt, S)
    # V = 180, K* = floor(180 / (0.9*20)) = 10, X* = 200; lambda = 20/220; I = lambda*O
    assert (dealer.K, dealer.X) == (10, Decimal(200))
    inside = Decimal(20) / Decimal(220) * Decimal("0.06")
    midline = Decimal("0.9") - Decimal("0.06") / Decimal(240) * (0 - Decimal(100))
    assert dealer.bid == max(vbt.B, midline - inside / 2)
    assert dealer.ask == min(vbt.A, midline + inside / 2)
    assert can_interior_buy(dealer, S)
    empty_bid = dealer.bid
    dealer.inventory = [object()] * 8  # more inventory: the midline and both quotes fall
    recompute_kernel(dealer, vbt, S)
    assert dealer.bid < empty_bid and dealer.ask >= dealer.bid


def test_kernel_guard_quotes_the_outside_market_when_the_mid_is_tiny():
    dealer, vbt = _desk_pair("0.02", "0.04", "100", 2)
    recompute_kernel(dealer, vbt, Decimal(20))
    assert (dealer.bid, dealer.ask, dealer.K) == (vbt.B, vbt.A, 0)
    assert not can_interior_buy(dealer, Decimal(20))


def test_no_capacity_without_cash():
    dealer, vbt = _desk_pair("0.9", "0.06", "0", 0)
    recompute_kernel(dealer, vbt, Decimal(20))
    assert dealer.K == 0 and not can_interior_buy(dealer, Decimal(20))
