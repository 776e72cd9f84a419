"""Tests of the batched P2P double auction (p2p_marl.sim.auction).

Hand-computed books pin the mechanisms down; hypothesis checks the market invariants
over many random books and compares the uniform and pay-as-bid clearing with an
exact (fractions.Fraction) order-by-order walk down the sorted books, and the pay-as-bid
seller revenue on wider books with a plain float walk.
"""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_marl.sim.auction import MECHANISMS, POOLED_MECHANISMS, ClearingResult, clear_double_auction

RETAIL = 0.30
FEED_IN = 0.05
MID = 0.5 * (RETAIL + FEED_IN)


def clear(net_kwh, limit_price_per_kwh, mechanism="uniform", k=0.5) -> ClearingResult:
    """Clear a batch with the same tariffs in every community."""
    net = np.atleast_2d(np.asarray(net_kwh, dtype=float))
    limit = np.atleast_2d(np.asarray(limit_price_per_kwh, dtype=float))
    b = net.shape[0]
    return clear_double_auction(net, limit, np.full(b, RETAIL), np.full(b, FEED_IN), mechanism, k)


# ----------------------------------------------------------------------------- hand-made books

# Buyers: 2 kWh at 0.30, 1 kWh at 0.20. Sellers: 1.5 kWh at 0.10, 2 kWh at 0.25.
# Walk: 1.5 kWh (0.30 vs 0.10), 0.5 kWh (0.30 vs 0.25), then 0.20 < 0.25 stops: V = 2 kWh,
# marginal bid 0.30 (first buyer, filled exactly), marginal ask 0.25 (partially filled).
BOOK_NET = [2.0, 1.0, -1.5, -2.0]
BOOK_LIMIT = [0.30, 0.20, 0.10, 0.25]


@pytest.mark.parametrize("k, price", [(0.5, 0.275), (0.0, 0.25), (1.0, 0.30), (0.2, 0.26)])
def test_uniform_price_on_hand_book(k, price):
    result = clear(BOOK_NET, BOOK_LIMIT, "uniform", k)
    np.testing.assert_allclose(result.p2p_buy_kwh, [[2.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(result.p2p_sell_kwh, [[0.0, 0.0, 1.5, 0.5]])
    np.testing.assert_allclose(result.clearing_price_per_kwh, [price])
    np.testing.assert_allclose(result.p2p_payment, [[2.0 * price, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(result.p2p_revenue, [[0.0, 0.0, 1.5 * price, 0.5 * price]])


def test_pay_as_bid_on_hand_book():
    # Both matched chunks go to the 0.30 buyer, so both sellers are paid 0.30.
    result = clear(BOOK_NET, BOOK_LIMIT, "pay_as_bid")
    np.testing.assert_allclose(result.p2p_buy_kwh, [[2.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(result.p2p_sell_kwh, [[0.0, 0.0, 1.5, 0.5]])
    np.testing.assert_allclose(result.p2p_payment, [[0.60, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(result.p2p_revenue, [[0.0, 0.0, 0.45, 0.15]])
    np.testing.assert_allclose(result.clearing_price_per_kwh, [0.30])


def test_pay_as_bid_pays_each_chunk_at_its_buyers_bid():
    # Buyers 1 kWh at 0.30 and 1 kWh at 0.20; one seller of 2 kWh at 0.10 gets 0.30 + 0.20.
    result = clear([[1.0, 1.0, -2.0]], [[0.30, 0.20, 0.10]], "pay_as_bid")
    np.testing.assert_allclose(result.p2p_payment, [[0.30, 0.20, 0.0]])
    np.testing.assert_allclose(result.p2p_revenue, [[0.0, 0.0, 0.50]])
    np.testing.assert_allclose(result.clearing_price_per_kwh, [0.25])


def test_mid_market_on_hand_book():
    # Demand 3 kWh < supply 3.5 kWh: buyers get all, sellers sell 3/3.5 of their offers.
    result = clear(BOOK_NET, BOOK_LIMIT, "mid_market")
    np.testing.assert_allclose(result.p2p_buy_kwh, [[2.0, 1.0, 0.0, 0.0]])
    np.testing.assert_allclose(result.p2p_sell_kwh, [[0.0, 0.0, 1.5 * 3 / 3.5, 2.0 * 3 / 3.5]])
    np.testing.assert_allclose(result.p2p_payment, MID * result.p2p_buy_kwh)
    np.testing.assert_allclose(result.p2p_revenue, MID * result.p2p_sell_kwh)
    np.testing.assert_allclose(result.clearing_price_per_kwh, [MID])


@pytest.mark.parametrize("mechanism", ["uniform", "pay_as_bid"])
def test_tied_marginal_orders_share_pro_rata(mechanism):
    # Buyers of 1 and 3 kWh both bid 0.2 for a single 2 kWh ask: each gets half its demand.
    result = clear([[1.0, 3.0, -2.0]], [[0.2, 0.2, 0.1]], mechanism)
    np.testing.assert_allclose(result.p2p_buy_kwh, [[0.5, 1.5, 0.0]])
    # Sellers of 1 and 3 kWh both ask 0.1 for a single 2 kWh bid: each sells half its offer.
    result = clear([[-1.0, -3.0, 2.0]], [[0.1, 0.1, 0.2]], mechanism)
    np.testing.assert_allclose(result.p2p_sell_kwh, [[0.5, 1.5, 0.0]])


def test_tied_sellers_get_the_same_mean_price_in_pay_as_bid():
    # Sellers 1 kWh and 1 kWh both at 0.10; buyers 1 kWh at 0.30 and 1 kWh at 0.20.
    result = clear([[-1.0, 1.0, -1.0, 1.0]], [[0.10, 0.30, 0.10, 0.20]], "pay_as_bid")
    np.testing.assert_allclose(result.p2p_revenue, [[0.25, 0.0, 0.25, 0.0]])


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize(
    "net, limit",
    [
        ([0.0, 0.0], [0.1, 0.2]),  # nobody trades
        ([1.0, 2.0], [0.3, 0.2]),  # buyers only
        ([-1.0, -2.0], [0.1, 0.2]),  # sellers only
    ],
)
def test_one_sided_books_clear_nothing_at_the_mid_price(mechanism, net, limit):
    result = clear([net], [limit], mechanism)
    for volume in (result.p2p_buy_kwh, result.p2p_sell_kwh, result.p2p_payment, result.p2p_revenue):
        np.testing.assert_array_equal(volume, 0.0)
    np.testing.assert_array_equal(result.clearing_price_per_kwh, [MID])


@pytest.mark.parametrize("mechanism", ["uniform", "pay_as_bid"])
def test_bids_below_asks_clear_nothing(mechanism):
    result = clear([[1.0, -1.0]], [[0.1, 0.2]], mechanism)
    np.testing.assert_array_equal(result.p2p_buy_kwh, 0.0)
    np.testing.assert_array_equal(result.clearing_price_per_kwh, [MID])


def test_communities_in_a_batch_are_independent():
    net = np.array([BOOK_NET, [1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    limit = np.array([BOOK_LIMIT, [0.1, 0.2, 0.0, 0.0], [0.1, 0.1, 0.1, 0.1]])
    result = clear(net, limit)
    np.testing.assert_allclose(result.p2p_buy_kwh[0], [2.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(result.p2p_buy_kwh[1:], 0.0)
    np.testing.assert_allclose(result.clearing_price_per_kwh, [0.275, MID, MID])


# ----------------------------------------------------------------------------- validation


def valid_args(b=2, n=3):
    return dict(
        net_kwh=np.ones((b, n)),
        limit_price_per_kwh=np.full((b, n), 0.1),
        retail_price_per_kwh=np.full(b, RETAIL),
        feed_in_price_per_kwh=np.full(b, FEED_IN),
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(mechanism="vickrey"), "mechanism"),
        (dict(k=1.5), "k must"),
        (dict(k=-0.1), "k must"),
        (dict(k=float("nan")), "k must"),
        (dict(net_kwh=np.ones(3)), "net_kwh must have shape"),
        (dict(net_kwh=np.ones((2, 0)), limit_price_per_kwh=np.ones((2, 0))), "net_kwh must have shape"),
        (dict(limit_price_per_kwh=np.ones((2, 4))), "limit_price_per_kwh must have shape"),
        (dict(retail_price_per_kwh=np.ones(3)), "retail_price_per_kwh must have shape"),
        (dict(feed_in_price_per_kwh=np.ones((2, 1))), "feed_in_price_per_kwh must have shape"),
        (dict(net_kwh=np.array([[1.0, np.nan, 0.0], [0.0, 0.0, 0.0]])), "net_kwh must be finite"),
        (dict(limit_price_per_kwh=np.full((2, 3), np.inf)), "limit_price_per_kwh must be finite"),
        (dict(retail_price_per_kwh=np.array([0.3, np.nan])), "retail_price_per_kwh must be finite"),
    ],
)
def test_invalid_inputs_raise_value_error(change, message):
    args = valid_args() | change
    with pytest.raises(ValueError, match=message):
        clear_double_auction(**args)


# ----------------------------------------------------------------------------- exact reference


def reference_clearing(net_row, limit_row, mechanism, k):
    """Exact order-by-order clearing of one community with pooled (pro-rata) price levels.

    Walks the bid levels from the highest and the ask levels from the lowest, trading
    while the bid is at least the ask. Returns (buy, sell, payment, revenue, price) as
    Fractions; price is None when nothing trades.
    """
    net = [Fraction(x) for x in net_row]
    limit = [Fraction(x) for x in limit_row]
    buyers = [i for i, q in enumerate(net) if q > 0]
    sellers = [i for i, q in enumerate(net) if q < 0]
    bid_levels = sorted({limit[i] for i in buyers}, reverse=True)
    ask_levels = sorted({limit[i] for i in sellers})
    bid_qty = [sum(net[i] for i in buyers if limit[i] == p) for p in bid_levels]
    ask_qty = [sum(-net[i] for i in sellers if limit[i] == p) for p in ask_levels]

    trades = []  # (bid level, ask level, kWh)
    i = j = 0
    bid_left = bid_qty[0] if bid_qty else 0
    ask_left = ask_qty[0] if ask_qty else 0
    while i < len(bid_levels) and j < len(ask_levels) and bid_levels[i] >= ask_levels[j]:
        kwh = min(bid_left, ask_left)
        trades.append((i, j, kwh))
        bid_left -= kwh
        ask_left -= kwh
        if bid_left == 0:
            i += 1
            bid_left = bid_qty[i] if i < len(bid_qty) else 0
        if ask_left == 0:
            j += 1
            ask_left = ask_qty[j] if j < len(ask_qty) else 0

    n = len(net)
    zero = [Fraction(0)] * n
    if not trades:
        return zero, zero, zero, zero, None
    bid_filled = [sum(t for bi, _, t in trades if bi == g) for g in range(len(bid_levels))]
    ask_filled = [sum(t for _, aj, t in trades if aj == g) for g in range(len(ask_levels))]
    ask_money = [sum(bid_levels[bi] * t for bi, aj, t in trades if aj == g) for g in range(len(ask_levels))]
    buy, sell, payment, revenue = list(zero), list(zero), list(zero), list(zero)
    for a in buyers:
        g = bid_levels.index(limit[a])
        buy[a] = net[a] / bid_qty[g] * bid_filled[g]
    for a in sellers:
        g = ask_levels.index(limit[a])
        sell[a] = -net[a] / ask_qty[g] * ask_filled[g]
    volume = sum(t for _, _, t in trades)
    if mechanism == "uniform":
        last_bid, last_ask = bid_levels[trades[-1][0]], ask_levels[trades[-1][1]]
        price = Fraction(k) * last_bid + (1 - Fraction(k)) * last_ask
        payment = [price * x for x in buy]
        revenue = [price * x for x in sell]
    else:
        payment = [limit[a] * buy[a] for a in range(n)]
        for a in sellers:
            g = ask_levels.index(limit[a])
            revenue[a] = -net[a] / ask_qty[g] * ask_money[g]
        price = sum(payment) / volume
    return buy, sell, payment, revenue, price


# ----------------------------------------------------------------------------- hypothesis

QUANTITY = st.one_of(
    st.just(0.0),
    st.sampled_from([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0]),
    st.floats(-10.0, 10.0, allow_nan=False, allow_subnormal=False),
)
# Multiples of 1/1024 kWh: their sums are exact in float64, so the float clearing and the
# exact walk see the same curves (an absorbed 1e-170 kWh order may flip the marginal order).
DYADIC_QUANTITY = st.one_of(st.just(0.0), st.integers(-10 * 1024, 10 * 1024).map(lambda i: i / 1024))
# A few shares of the tariff band make ties likely; free floats cover everything else.
PRICE_SHARE = st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(0.0, 1.0))


@st.composite
def markets(draw, limits_in_band=True, quantity=QUANTITY, max_communities=4, max_agents=8):
    """(net_kwh, limit, retail, feed_in) with limits inside [feed_in, retail], or anywhere in [-1, 1]."""
    b = draw(st.integers(1, max_communities))
    n = draw(st.integers(1, max_agents))
    net = np.array(draw(st.lists(quantity, min_size=b * n, max_size=b * n))).reshape(b, n)
    feed_in = np.array(draw(st.lists(st.floats(0.0, 0.2), min_size=b, max_size=b)))
    retail = feed_in + np.array(draw(st.lists(st.floats(0.0, 0.4), min_size=b, max_size=b)))
    if limits_in_band:
        share = np.array(draw(st.lists(PRICE_SHARE, min_size=b * n, max_size=b * n))).reshape(b, n)
        limit = feed_in[:, None] + share * (retail - feed_in)[:, None]
    else:
        price = st.one_of(st.sampled_from([-0.5, 0.0, 0.2]), st.floats(-1.0, 1.0))
        limit = np.array(draw(st.lists(price, min_size=b * n, max_size=b * n))).reshape(b, n)
    return net, limit, retail, feed_in


def money_tolerance(net, limit):
    """Rounding allowance for sums of money: relative 1e-9 of the largest possible amount."""
    return 1e-9 * (1.0 + np.abs(net).sum(axis=1) * (1.0 + np.abs(limit).max(axis=1)))


@settings(max_examples=300, deadline=None)
@given(market=markets(limits_in_band=False), mechanism=st.sampled_from(MECHANISMS), k=st.floats(0.0, 1.0))
def test_market_invariants(market, mechanism, k):
    net, limit, retail, feed_in = market
    result = clear_double_auction(net, limit, retail, feed_in, mechanism, k)
    buy, sell = result.p2p_buy_kwh, result.p2p_sell_kwh
    for array in (buy, sell, result.p2p_payment, result.p2p_revenue):
        assert array.shape == net.shape and array.dtype == np.float64
    assert result.clearing_price_per_kwh.shape == (net.shape[0],)

    # Nobody trades more than it offered, nor in the wrong direction (exact, no tolerance).
    assert np.all(buy >= 0.0) and np.all(buy <= np.maximum(net, 0.0))
    assert np.all(sell >= 0.0) and np.all(sell <= np.maximum(-net, 0.0))
    assert np.all(result.p2p_payment[buy == 0.0] == 0.0)
    assert np.all(result.p2p_revenue[sell == 0.0] == 0.0)
    # Energy and money balance inside every community.
    np.testing.assert_allclose(buy.sum(axis=1), sell.sum(axis=1), rtol=1e-9, atol=1e-12)
    tolerance = money_tolerance(net, limit)
    assert np.all(np.abs(result.p2p_payment.sum(axis=1) - result.p2p_revenue.sum(axis=1)) <= tolerance)

    nothing_traded = buy.sum(axis=1) == 0.0
    mid = 0.5 * (retail + feed_in)
    np.testing.assert_array_equal(result.clearing_price_per_kwh[nothing_traded], mid[nothing_traded])
    if mechanism in POOLED_MECHANISMS:  # they ignore limit prices: see test_pooled_rules_*
        return
    # Individual rationality: nobody pays more than its bid or receives less than its ask.
    assert np.all(result.p2p_payment <= limit * buy + tolerance[:, None])
    assert np.all(result.p2p_revenue >= limit * sell - tolerance[:, None])
    # An order on the wrong side of every order of the other side never trades.
    is_seller, is_buyer = net < 0.0, net > 0.0
    lowest_ask = np.where(is_seller, limit, np.inf).min(axis=1, keepdims=True)
    highest_bid = np.where(is_buyer, limit, -np.inf).max(axis=1, keepdims=True)
    assert np.all(buy[is_buyer & (limit < lowest_ask)] == 0.0)
    assert np.all(sell[is_seller & (limit > highest_bid)] == 0.0)


@settings(max_examples=200, deadline=None)
@given(market=markets(limits_in_band=True), mechanism=st.sampled_from(MECHANISMS), k=st.floats(0.0, 1.0))
def test_prices_stay_in_the_tariff_band_when_limits_do(market, mechanism, k):
    net, limit, retail, feed_in = market
    result = clear_double_auction(net, limit, retail, feed_in, mechanism, k)
    price = result.clearing_price_per_kwh
    slack = 1e-12
    assert np.all(price >= feed_in - slack) and np.all(price <= retail + slack)
    tolerance = money_tolerance(net, limit)[:, None]
    for volume, money in ((result.p2p_buy_kwh, result.p2p_payment), (result.p2p_sell_kwh, result.p2p_revenue)):
        assert np.all(money >= feed_in[:, None] * volume - tolerance)
        assert np.all(money <= retail[:, None] * volume + tolerance)


@settings(max_examples=300, deadline=None)
@given(
    market=markets(limits_in_band=False, quantity=DYADIC_QUANTITY),
    mechanism=st.sampled_from(["uniform", "pay_as_bid"]),
    k=st.floats(0.0, 1.0),
)
def test_matches_exact_order_book_walk(market, mechanism, k):
    """Efficient volume, pro-rata fills, prices and money agree with an exact walk."""
    net, limit, retail, feed_in = market
    result = clear_double_auction(net, limit, retail, feed_in, mechanism, k)
    mid = 0.5 * (retail + feed_in)
    for c in range(net.shape[0]):
        buy, sell, payment, revenue, price = reference_clearing(net[c], limit[c], mechanism, k)
        volume_tolerance = 1e-9 * (1.0 + np.abs(net[c]).sum())
        money_tol = money_tolerance(net[c : c + 1], limit[c : c + 1])[0]
        np.testing.assert_allclose(result.p2p_buy_kwh[c], np.array(buy, dtype=float), rtol=0, atol=volume_tolerance)
        np.testing.assert_allclose(result.p2p_sell_kwh[c], np.array(sell, dtype=float), rtol=0, atol=volume_tolerance)
        np.testing.assert_allclose(result.p2p_payment[c], np.array(payment, dtype=float), rtol=0, atol=money_tol)
        np.testing.assert_allclose(result.p2p_revenue[c], np.array(revenue, dtype=float), rtol=0, atol=money_tol)
        expected_price = mid[c] if price is None else float(price)
        assert result.clearing_price_per_kwh[c] == pytest.approx(expected_price, rel=1e-9, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(market=markets(limits_in_band=False), mechanism=st.sampled_from(MECHANISMS), data=st.data())
def test_agent_order_and_batch_neighbours_do_not_matter(market, mechanism, data):
    net, limit, retail, feed_in = market
    result = clear_double_auction(net, limit, retail, feed_in, mechanism)
    perm = np.array(data.draw(st.permutations(range(net.shape[1]))))
    permuted = clear_double_auction(net[:, perm], limit[:, perm], retail, feed_in, mechanism)
    for name in ("p2p_buy_kwh", "p2p_sell_kwh", "p2p_payment", "p2p_revenue"):
        np.testing.assert_allclose(getattr(permuted, name), getattr(result, name)[:, perm], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(permuted.clearing_price_per_kwh, result.clearing_price_per_kwh, rtol=1e-9, atol=1e-12)
    # Clearing a community on its own gives bit-identical results: no leakage across B.
    c = data.draw(st.integers(0, net.shape[0] - 1))
    alone = clear_double_auction(net[c : c + 1], limit[c : c + 1], retail[c : c + 1], feed_in[c : c + 1], mechanism)
    for name in ("p2p_buy_kwh", "p2p_sell_kwh", "p2p_payment", "p2p_revenue", "clearing_price_per_kwh"):
        np.testing.assert_array_equal(getattr(alone, name)[0], getattr(result, name)[c])


@settings(max_examples=150, deadline=None)
@given(market=markets(limits_in_band=True))
def test_mid_market_serves_the_short_side_and_scales_the_long_side(market):
    net, limit, retail, feed_in = market
    result = clear_double_auction(net, limit, retail, feed_in, "mid_market")
    demand, supply = np.maximum(net, 0.0), np.maximum(-net, 0.0)
    total_demand, total_supply = demand.sum(axis=1), supply.sum(axis=1)
    traded = np.minimum(total_demand, total_supply)
    np.testing.assert_allclose(result.p2p_buy_kwh.sum(axis=1), traded, rtol=1e-9, atol=1e-12)
    mid = 0.5 * (retail + feed_in)
    np.testing.assert_array_equal(result.clearing_price_per_kwh, mid)
    np.testing.assert_allclose(result.p2p_payment, mid[:, None] * result.p2p_buy_kwh, rtol=1e-12, atol=0)
    np.testing.assert_allclose(result.p2p_revenue, mid[:, None] * result.p2p_sell_kwh, rtol=1e-12, atol=0)
    # Every agent on a side gets the same fraction of its offer: min(1, other side / own side).
    buy_fraction = np.divide(traded, total_demand, out=np.ones_like(total_demand), where=total_demand > 0)
    sell_fraction = np.divide(traded, total_supply, out=np.ones_like(total_supply), where=total_supply > 0)
    np.testing.assert_allclose(result.p2p_buy_kwh, demand * buy_fraction[:, None], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.p2p_sell_kwh, supply * sell_fraction[:, None], rtol=1e-9, atol=1e-12)


def test_sdr_and_bill_sharing_on_hand_book():
    # Demand 3 kWh, supply 3.5 kWh: SDR >= 1, so the SDR price is the feed-in tariff and the community exports
    # on net, so bill sharing prices at feed-in too; sellers sell 3/3.5 of their offers.
    for mechanism in ("sdr", "bill_sharing"):
        result = clear(BOOK_NET, BOOK_LIMIT, mechanism)
        np.testing.assert_allclose(result.p2p_buy_kwh, [[2.0, 1.0, 0.0, 0.0]])
        np.testing.assert_allclose(result.p2p_sell_kwh, [[0.0, 0.0, 1.5 * 3 / 3.5, 2.0 * 3 / 3.5]])
        np.testing.assert_allclose(result.clearing_price_per_kwh, [FEED_IN])
    # Demand 2 kWh, supply 1 kWh: SDR = 0.5 gives feed_in * retail / ((retail - feed_in) * 0.5 + feed_in);
    # the community imports on net, so bill sharing prices every P2P kWh at retail.
    sdr_price = FEED_IN * RETAIL / ((RETAIL - FEED_IN) * 0.5 + FEED_IN)
    for mechanism, price in (("sdr", sdr_price), ("bill_sharing", RETAIL)):
        result = clear([[2.0, -1.0]], [[0.1, 0.2]], mechanism)
        np.testing.assert_allclose(result.p2p_buy_kwh, [[1.0, 0.0]])
        np.testing.assert_allclose(result.p2p_sell_kwh, [[0.0, 1.0]])
        np.testing.assert_allclose(result.p2p_payment, [[price, 0.0]])
        np.testing.assert_allclose(result.p2p_revenue, [[0.0, price]])
    # A balanced community: SDR = 1 gives feed-in; bill sharing's net bill is zero, priced at the mid price.
    np.testing.assert_allclose(clear([[1.0, -1.0]], [[0.1, 0.2]], "sdr").clearing_price_per_kwh, [FEED_IN])
    np.testing.assert_allclose(clear([[1.0, -1.0]], [[0.1, 0.2]], "bill_sharing").clearing_price_per_kwh, [MID])


@settings(max_examples=200, deadline=None)
@given(market=markets(limits_in_band=False), mechanism=st.sampled_from(POOLED_MECHANISMS))
def test_pooled_rules_are_budget_balanced_within_the_tariffs_and_better_than_the_grid(market, mechanism):
    """The pooled rules ignore limit prices, so even wild limits leave the price in [feed-in, retail]: every
    member's bill (P2P plus the grid for the rest) is no worse than the grid alone (individual rationality
    against the grid), and the community's P2P money balances."""
    net, limit, retail, feed_in = market
    result = clear_double_auction(net, limit, retail, feed_in, mechanism)
    price = result.clearing_price_per_kwh
    assert np.all(price >= feed_in - 1e-12) and np.all(price <= retail + 1e-12)
    demand, supply = np.maximum(net, 0.0), np.maximum(-net, 0.0)
    traded = np.minimum(demand.sum(axis=1), supply.sum(axis=1))
    np.testing.assert_allclose(result.p2p_buy_kwh.sum(axis=1), traded, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.p2p_sell_kwh.sum(axis=1), traded, rtol=1e-9, atol=1e-12)
    tolerance = money_tolerance(net, limit)
    assert np.all(np.abs(result.p2p_payment.sum(axis=1) - result.p2p_revenue.sum(axis=1)) <= tolerance)
    np.testing.assert_allclose(result.p2p_payment, price[:, None] * result.p2p_buy_kwh, rtol=1e-12, atol=0)
    buyer_bill = result.p2p_payment + retail[:, None] * (demand - result.p2p_buy_kwh)
    seller_income = result.p2p_revenue + feed_in[:, None] * (supply - result.p2p_sell_kwh)
    assert np.all(buyer_bill <= retail[:, None] * demand + tolerance[:, None])
    assert np.all(seller_income >= feed_in[:, None] * supply - tolerance[:, None])


@settings(max_examples=200, deadline=None)
@given(market=markets(limits_in_band=True))
def test_sdr_price_falls_from_retail_to_feed_in_as_supply_meets_demand(market):
    net, limit, retail, feed_in = market
    result = clear_double_auction(net, limit, retail, feed_in, "sdr")
    demand, supply = np.maximum(net, 0.0).sum(axis=1), np.maximum(-net, 0.0).sum(axis=1)
    trades = (demand > 0) & (supply > 0) & (feed_in > 0)  # (with a free feed-in every SDR price is 0)
    ratio = np.minimum(supply[trades] / demand[trades], 1.0)
    expected = feed_in[trades] * retail[trades] / ((retail[trades] - feed_in[trades]) * ratio + feed_in[trades])
    np.testing.assert_allclose(result.clearing_price_per_kwh[trades], expected, rtol=1e-12)
    # The more supply per unit of demand, the lower the price (both within the band).
    grown = clear_double_auction(np.where(net < 0, 2.0 * net, net), limit, retail, feed_in, "sdr")
    assert np.all(grown.clearing_price_per_kwh[trades] <= result.clearing_price_per_kwh[trades] + 1e-12)


@settings(max_examples=200, deadline=None)
@given(market=markets(limits_in_band=True))
def test_bill_sharing_splits_the_community_net_grid_bill_by_signed_net_energy(market):
    """Each member's bill (P2P money plus its own grid exchange) is its share of the community's net grid bill,
    in proportion to its signed net energy."""
    net, limit, retail, feed_in = market
    result = clear_double_auction(net, limit, retail, feed_in, "bill_sharing")
    demand, supply = np.maximum(net, 0.0), np.maximum(-net, 0.0)
    member_bill = (result.p2p_payment - result.p2p_revenue + retail[:, None] * (demand - result.p2p_buy_kwh)
                   - feed_in[:, None] * (supply - result.p2p_sell_kwh))
    community_net = net.sum(axis=1)
    community_bill = np.where(community_net > 0, retail, feed_in) * community_net
    unbalanced = np.abs(community_net) > 1e-9 * (1.0 + np.abs(net).sum(axis=1))
    tolerance = money_tolerance(net, limit)[:, None]
    share = np.divide(net, community_net[:, None], out=np.zeros_like(net), where=unbalanced[:, None])
    assert np.all(np.abs(member_bill - community_bill[:, None] * share)[unbalanced] <= tolerance.repeat(
        net.shape[1], axis=1)[unbalanced] * 10)
    np.testing.assert_allclose(member_bill.sum(axis=1), community_bill, atol=float(tolerance.max()) * 10)


def walked_pay_as_bid_revenue(net_row, limit_row):
    """Seller revenues of one community by walking both sorted books in floats (slow, plain).

    Orders with equal limits pool into one price level. Bid levels from the highest and ask
    levels from the lowest trade while the bid is at least the ask; every matched kWh is paid
    at the bid of the buyer level receiving it, and each seller gets its quantity's share of
    its level's money.
    """
    n = len(net_row)
    buyers = [a for a in range(n) if net_row[a] > 0.0]
    sellers = [a for a in range(n) if net_row[a] < 0.0]
    bid_levels = sorted({limit_row[a] for a in buyers}, reverse=True)
    ask_levels = sorted({limit_row[a] for a in sellers})
    bid_left = [sum(net_row[a] for a in buyers if limit_row[a] == p) for p in bid_levels]
    ask_quantity = [sum(-net_row[a] for a in sellers if limit_row[a] == p) for p in ask_levels]
    ask_left = list(ask_quantity)
    ask_money = [0.0] * len(ask_levels)
    i = j = 0
    while i < len(bid_levels) and j < len(ask_levels) and bid_levels[i] >= ask_levels[j]:
        kwh = min(bid_left[i], ask_left[j])  # one of the two levels is used up exactly
        ask_money[j] += bid_levels[i] * kwh
        bid_left[i] -= kwh
        ask_left[j] -= kwh
        i += bid_left[i] == 0.0
        j += ask_left[j] == 0.0
    revenue = np.zeros(n)
    for a in sellers:
        level = ask_levels.index(limit_row[a])
        revenue[a] = -net_row[a] / ask_quantity[level] * ask_money[level]
    return revenue


@settings(max_examples=200, deadline=None)
@given(market=markets(limits_in_band=False, max_communities=5, max_agents=30))
def test_pay_as_bid_revenue_matches_walking_both_books(market):
    """Wide books (N up to 30, many ties and zeros) in a batch and each community alone (B = 1)."""
    net, limit, retail, feed_in = market
    result = clear_double_auction(net, limit, retail, feed_in, "pay_as_bid")
    tolerance = money_tolerance(net, limit)
    for c in range(net.shape[0]):
        expected = walked_pay_as_bid_revenue(net[c].tolist(), limit[c].tolist())
        alone = clear_double_auction(net[c : c + 1], limit[c : c + 1], retail[c : c + 1], feed_in[c : c + 1],
                                     "pay_as_bid")
        for revenue in (result.p2p_revenue[c], alone.p2p_revenue[0]):
            np.testing.assert_allclose(revenue, expected, rtol=1e-9, atol=tolerance[c])
