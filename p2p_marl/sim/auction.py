"""Batched peer-to-peer double auction, cleared once per settlement period.

Every array is batched over B independent communities of N agents:

* ``net_kwh`` (B, N), signed energy for the step: ``> 0`` the agent wants to buy that
  many kWh, ``< 0`` it wants to sell ``-net_kwh`` kWh, ``0`` it does not trade.
* ``limit_price_per_kwh`` (B, N): a buyer's bid (the most it pays per kWh) or a
  seller's ask (the least it accepts per kWh). Ignored for agents with ``net_kwh == 0``.
* ``retail_price_per_kwh`` / ``feed_in_price_per_kwh`` (B,): the grid tariffs of the
  step. They only enter the mid-market rate and the price reported when nothing trades.

Orders are divisible: a buyer accepts any quantity up to its demand at any price up to
its bid, and a seller likewise. Whatever does not trade P2P is settled with the grid
by the caller (import at retail, export at feed-in).

Mechanisms (``MECHANISMS``):

``"uniform"`` -- k-double auction. Bids sorted descending and asks ascending form the
    demand and supply step curves; the traded volume is where they cross,
    ``V = max_p min(D(p), S(p))`` with ``D(p)`` the demand bid at ``>= p`` and ``S(p)``
    the supply asked at ``<= p`` (the efficient volume; the marginal order may be
    partially filled). Everyone trades at ``p = k * b_m + (1 - k) * a_m``, with
    ``b_m`` / ``a_m`` the marginal (last accepted) bid / ask, so ``a_m <= p <= b_m``.
``"pay_as_bid"`` -- the same matched volumes, but each kWh is paid at the bid of the
    buyer it goes to: the buyer pays its own bid, and the seller it was matched with
    (walking both sorted books in step) receives exactly that, so money balances.
``"mid_market"`` -- mid-market rate (Long et al. 2017): bids and asks are ignored, all
    P2P energy trades at ``(retail + feed_in) / 2``; the short side trades everything
    and the long side is scaled down pro-rata to its quantities.
``"sdr"`` -- supply-demand ratio (Liu et al. 2017): the same pooled volumes as the
    mid-market rate, at an internal price set by ``SDR = supply / demand``:
    ``p = feed_in * retail / ((retail - feed_in) * SDR + feed_in)`` for ``SDR < 1`` and
    ``p = feed_in`` for ``SDR >= 1``; retail with no supply, falling to feed-in as
    supply meets demand.
``"bill_sharing"`` -- the community is billed by the grid as one customer at its net
    position, and that net bill is split in proportion to each member's signed net
    energy: the same pooled volumes, every P2P kWh at the community's marginal grid
    price, retail when the community imports on net, feed-in when it exports (the mid
    price when it balances exactly). Splitting import cost among importers and export
    revenue among exporters instead (Long et al.'s variant) prices internal energy at
    zero, below the feed-in tariff; this form keeps every price in [feed_in, retail].

The three pooled rules ignore bids and asks: they promise individual rationality
against the grid (nobody pays more than retail or receives less than feed-in per P2P
kWh), not against an agent's own limit price. The two order-book rules promise both.

Ties: orders with exactly equal limit prices form one price level that acts as a
single pooled order; whatever the level trades is shared pro-rata to the quantities of
its orders (so at the margin, tied orders are filled by the same fraction, and in
pay-as-bid tied sellers receive the same mean price). The result therefore does not
depend on the order of agents.

``ClearingResult.clearing_price_per_kwh`` is the uniform price, the volume-weighted
mean price (pay-as-bid) or the pooled rule's price; when nothing clears it is the mid
price ``(feed_in + retail) / 2`` of the step, for every mechanism.

Implementation: each community's orders are sorted once by limit price; both sides of
the book are then held as one stacked (2, N, B) array, side 0 the bids best (highest)
first and side 1 the asks best (lowest) first, which is the same sorted list read
backwards. Asks carry their price negated, so "higher is better" on both sides and one
set of array operations clears both (at a single community's N orders the time goes into
the number of numpy calls, not into the arithmetic). Cumulative sums over the sorted
positions give the step curves, and the clearing is a few reductions over agents.
Everything is vectorised over B; the Python loops run over the N sorted positions, one
operation on length-B rows each, or over the log2 N rounds of a binary search (pay-as-bid).
Cost O(B N log N). Volumes are never rounded above an agent's offer: ``0 <= p2p_buy_kwh <=
max(net_kwh, 0)`` and ``0 <= p2p_sell_kwh <= max(-net_kwh, 0)`` hold exactly; the sums
of buys and sells (and of payments and revenues) agree up to float rounding.

``clear_double_auction`` checks its inputs and calls ``clear_sides``, the clearing
itself, which the simulator calls directly on inputs it built (no second implementation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

MECHANISMS = ("uniform", "pay_as_bid", "mid_market", "sdr", "bill_sharing")
# The rules that ignore the order book's prices and clear the pooled sides (see _clear_pool).
POOLED_MECHANISMS = ("mid_market", "sdr", "bill_sharing")

# The side axis of stacked arrays: BUY = demand / bids / imports, SELL = supply / asks / exports.
BUY, SELL = 0, 1
# max(SIDE_SIGN * net, 0) splits signed net energy into its two sides, shaped (2, ...) like net.
SIDE_SIGN = np.array([1.0, -1.0])[:, None, None]

# Cumulative sums over the sorted positions: numpy's accumulate walks the short position
# axis one element at a time, fastest for a few communities; from about this many on (N = 10,
# measured), N additions of whole length-B rows are faster. Both add in the same order, so
# the numbers agree.
_ROW_LOOP_MIN_COMMUNITIES = 160


@dataclass(frozen=True)
class ClearingResult:
    """Outcome of one clearing; every (B, N) array is zero for agents that do not trade."""

    p2p_buy_kwh: np.ndarray  # (B, N) >= 0, energy bought from peers
    p2p_sell_kwh: np.ndarray  # (B, N) >= 0, energy sold to peers
    p2p_payment: np.ndarray  # (B, N) money paid by buyers (>= 0 when prices are)
    p2p_revenue: np.ndarray  # (B, N) money received by sellers (>= 0 when prices are)
    clearing_price_per_kwh: np.ndarray  # (B,) see module docstring


class _SortedBook(NamedTuple):
    """Both sides of the book, best order first; arrays (2, N, B), side BUY bids, side SELL asks.

    Ask position j is bid position N - 1 - j of the same sorted list, so ``x[SELL, ::-1]``
    puts an ask-side array into the bids' order. A price level is a run of equal prices;
    the step curves are evaluated at each position's own price including its whole level:
    D(p) the demand bid at >= p, S(p) the supply asked at <= p.
    """

    index: np.ndarray  # int: flat index into the (2, B, N) side arrays of the order at each position
    merit_per_kwh: np.ndarray  # the bid price, and minus the ask price: higher is better on both sides
    quantity_kwh: np.ndarray  # demand of the bid / supply of the ask at each position
    has_quantity: np.ndarray  # bool: quantity_kwh > 0, an order with something to trade
    continues_level: np.ndarray  # bool: same price as the position before on its side
    cumulative_kwh: np.ndarray  # quantity at this and better positions of its side
    at_or_better_kwh: np.ndarray  # the same including the whole price level: D(price) for bids, S(price) for asks
    traded_kwh: np.ndarray  # (B,) efficient volume V = max_p min(D(p), S(p))


def clear_double_auction(
    net_kwh: np.ndarray,
    limit_price_per_kwh: np.ndarray,
    retail_price_per_kwh: np.ndarray,
    feed_in_price_per_kwh: np.ndarray,
    mechanism: str = "uniform",
    k: float = 0.5,
) -> ClearingResult:
    """Clear one step of B community markets at once (see the module docstring)."""
    net_kwh, limit_price_per_kwh, retail_price_per_kwh, feed_in_price_per_kwh = _validated(
        net_kwh, limit_price_per_kwh, retail_price_per_kwh, feed_in_price_per_kwh, mechanism, k
    )
    traded_kwh, payment, revenue, price = clear_sides(
        np.maximum(SIDE_SIGN * net_kwh, 0.0), limit_price_per_kwh, retail_price_per_kwh, feed_in_price_per_kwh,
        mechanism, k,
    )
    return ClearingResult(traded_kwh[BUY], traded_kwh[SELL], payment, revenue, price)


def clear_sides(
    side_kwh: np.ndarray, limit_price_per_kwh: np.ndarray, retail_price_per_kwh: np.ndarray,
    feed_in_price_per_kwh: np.ndarray, mechanism: str, k: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The clearing of ``clear_double_auction`` without its input checks, for callers that built valid inputs.

    ``side_kwh`` (2, B, N): ``(max(net_kwh, 0), max(-net_kwh, 0))``; ``limit_price_per_kwh``
    (B, N), ``retail_price_per_kwh`` and ``feed_in_price_per_kwh`` (B,) finite. Returns ``traded_kwh``
    (2, B, N) = (p2p buy, p2p sell), payment (B, N), revenue (B, N) and the clearing price (B,).
    """
    mid_price_per_kwh = 0.5 * (retail_price_per_kwh + feed_in_price_per_kwh)
    if mechanism in POOLED_MECHANISMS:
        return _clear_pool(side_kwh, _pool_price(side_kwh, retail_price_per_kwh, feed_in_price_per_kwh,
                                                 mid_price_per_kwh, mechanism), mid_price_per_kwh)
    book = _sorted_book(side_kwh, limit_price_per_kwh)
    filled_kwh, marginal_merit = _fill(book)
    traded_kwh = _unsorted(filled_kwh, book.index)
    if mechanism == "uniform":
        # Where nothing traded the marginal prices may be +-inf; substitute before mixing.
        traded = book.traded_kwh > 0.0
        marginal_bid = np.where(traded, marginal_merit[BUY], mid_price_per_kwh)
        marginal_ask = np.where(traded, -marginal_merit[SELL], mid_price_per_kwh)
        price = np.where(traded, k * marginal_bid + (1.0 - k) * marginal_ask, mid_price_per_kwh)
        money = price[:, None] * traded_kwh  # everyone at the one price: (payment, revenue)
        return traded_kwh, money[BUY], money[SELL], price
    # Pay-as-bid: each buyer pays its own bid. The mean price sums over each community's
    # contiguous row of agents, so a community's result does not depend on B.
    payment = limit_price_per_kwh * traded_kwh[BUY]
    total_buy_kwh = traded_kwh[BUY].sum(axis=1)
    bought = total_buy_kwh > 0.0
    price = np.where(bought, payment.sum(axis=1) / np.where(bought, total_buy_kwh, 1.0), mid_price_per_kwh)
    return traded_kwh, payment, _unsorted(_pay_as_bid_revenue(book), book.index[BUY]), price


def _validated(
    net_kwh, limit_price_per_kwh, retail_price_per_kwh, feed_in_price_per_kwh, mechanism: str, k: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four arrays as float64, after checking the mechanism, k, shapes and finiteness."""
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
    if not np.isfinite(k) or not 0.0 <= k <= 1.0:
        raise ValueError(f"k must be a finite number in [0, 1], got {k!r}")
    arrays = {
        "net_kwh": np.asarray(net_kwh, dtype=np.float64),
        "limit_price_per_kwh": np.asarray(limit_price_per_kwh, dtype=np.float64),
        "retail_price_per_kwh": np.asarray(retail_price_per_kwh, dtype=np.float64),
        "feed_in_price_per_kwh": np.asarray(feed_in_price_per_kwh, dtype=np.float64),
    }
    net = arrays["net_kwh"]
    if net.ndim != 2 or net.shape[1] == 0:
        raise ValueError(f"net_kwh must have shape (B, N) with N >= 1, got {net.shape}")
    expected = {
        "limit_price_per_kwh": net.shape,
        "retail_price_per_kwh": net.shape[:1],
        "feed_in_price_per_kwh": net.shape[:1],
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ValueError(f"{name} must have shape {shape} to match net_kwh, got {arrays[name].shape}")
    for name, array in arrays.items():
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must be finite (no NaN or inf)")
    return tuple(arrays.values())


def _sorted_book(side_kwh: np.ndarray, limit_price_per_kwh: np.ndarray) -> _SortedBook:
    """Sort the orders by limit price and build both sides' step curves and the efficient volume."""
    n_communities, n_agents = limit_price_per_kwh.shape
    size = n_communities * n_agents
    order = np.argsort(-limit_price_per_kwh, axis=1)  # best bid first
    # Flat (B, N) indices of the sorted orders, laid out (N, B) so that reductions over
    # agents run along length-B rows; the asks are the same list backwards, indexing the
    # second half of the (2, B, N) side arrays. One gather then sorts and transposes.
    bid_index = (order + np.arange(0, size, n_agents)[:, None]).T
    index = np.empty((2, n_agents, n_communities), dtype=np.intp)
    index[BUY] = bid_index
    np.add(bid_index[::-1], size, out=index[SELL])
    merit = np.take(limit_price_per_kwh, index, mode="wrap")  # the asks' half of index wraps onto the same prices
    np.negative(merit[SELL], out=merit[SELL])
    quantity_kwh = np.take(side_kwh, index)
    has_quantity = quantity_kwh > 0.0
    continues_level = np.zeros(index.shape, dtype=bool)
    np.equal(merit[:, 1:], merit[:, :-1], out=continues_level[:, 1:])
    cumulative_kwh = _running_sum(quantity_kwh)
    # A level's quantity at or better than its price ends at its last position.
    at_or_better_kwh = _spread_level_end(cumulative_kwh, continues_level)
    # min(D(p), S(p)) peaks at a bid price: between bids D is flat and S only grows.
    crossing_kwh = np.where(has_quantity[BUY], np.minimum(at_or_better_kwh[BUY], at_or_better_kwh[SELL, ::-1]), 0.0)
    return _SortedBook(index, merit, quantity_kwh, has_quantity, continues_level, cumulative_kwh, at_or_better_kwh,
                       crossing_kwh.max(axis=0))


def _fill(book: _SortedBook) -> tuple[np.ndarray, np.ndarray]:
    """Fill both sides of the book; returns the fills (2, N, B) and the marginal merit (2, B).

    The quantity at or better than an order's price grows as orders get worse, so the
    orders whose level's quantity stays below V fill completely, the best level that
    reaches V (the marginal one) fills pro-rata, and worse ones not at all. The curve
    values are the very numbers V was taken from, so these comparisons are consistent and
    the marginal fraction stays in [0, 1] under rounding. The marginal merit is the
    marginal bid and minus the marginal ask (-inf where a side has none).
    """
    at_or_better_kwh, traded_kwh = book.at_or_better_kwh, book.traded_kwh
    inside = at_or_better_kwh < traded_kwh  # filled completely
    reaches_volume = book.has_quantity & ~inside
    marginal_merit = np.where(reaches_volume, book.merit_per_kwh, -np.inf).max(axis=1)
    through_marginal_kwh = np.where(reaches_volume, at_or_better_kwh, np.inf).min(axis=1)
    before_marginal_kwh = np.where(inside, at_or_better_kwh, 0.0).max(axis=1)
    # through >= V > before wherever something trades; 0 / (positive or inf) elsewhere.
    marginal_fraction = (traded_kwh - before_marginal_kwh) / (through_marginal_kwh - before_marginal_kwh)
    # The marginal level's orders get the fraction; the others 1 if inside, else 0. (No inside
    # order is on the marginal level: a level's orders share one quantity at or better.)
    fill_fraction = np.where(book.merit_per_kwh == marginal_merit[:, None], marginal_fraction[:, None], inside)
    return book.quantity_kwh * fill_fraction, marginal_merit


def _pay_as_bid_revenue(book: _SortedBook) -> np.ndarray:
    """Seller revenue (N, B) in the bids' sorted order when every matched kWh is priced at the
    bid of the buyer receiving it.

    Walking both sorted books in step, the seller level at price p holds the supply
    interval (S(p-), S(p)] and sells the part of it below V; that part is paid the
    integral of the bid curve over it. Each seller takes its quantity's share of its
    level's money, matching the pro-rata volumes.
    """
    continues_level = book.continues_level[BUY]
    supply_kwh = book.quantity_kwh[SELL, ::-1]
    level_supply = _spread_level_end(_level_running_sum(supply_kwh, continues_level), continues_level)
    # The bid curve's money up to min(S(p), V) for each position's price level p.
    money_upper = _bid_money_up_to(book, np.minimum(book.at_or_better_kwh[SELL, ::-1], book.traded_kwh))
    # A level's lower bound min(S(p-), V) is the upper bound of the next level in the bids' order
    # (the next lower price p': S(p-) = S(p'), the very same float), zero after the last position:
    # money_upper one position on, read at the level's last position and spread over the level.
    money_lower = np.zeros_like(money_upper)
    money_lower[:-1] = money_upper[1:]
    money_lower = _spread_level_end(money_lower, continues_level)
    share = np.divide(supply_kwh, level_supply, out=np.zeros_like(level_supply), where=level_supply > 0.0)
    return share * (money_upper - money_lower)


def _bid_money_up_to(book: _SortedBook, volume_kwh: np.ndarray) -> np.ndarray:
    """Integral of the bid curve from 0 to volume_kwh (any shape ending in B).

    Position m's bid covers the demand interval (demand_cum[m-1], demand_cum[m]]; tied bids
    share one price, so their order within a level does not matter. A volume in position m's
    interval costs the money of the positions before m plus bid m over the rest, where m is
    the number of positions with demand_cum < volume (beyond the total demand, m = N and the
    money is the total): a binary search of the sorted cumulative demand, vectorised over
    all volumes, ceil(log2(N + 1)) rounds of O(size) each.
    """
    n_agents, n_communities = book.merit_per_kwh.shape[1:]
    rows = 1 << n_agents.bit_length()  # a power of two > N: the search never probes past the table
    # Row k of the table: the curve before position k, demand_cum[k-1] and money_cum[k-1] (zero
    # for k = 0), and bid k (zero for k = N); demand is +inf past row N, where no search stops.
    curve = np.zeros((3, rows, n_communities))
    curve[0, 1 : n_agents + 1] = book.cumulative_kwh[BUY]
    curve[0, n_agents + 1 :] = np.inf
    curve[1, 1 : n_agents + 1] = _running_sum(book.merit_per_kwh[BUY] * book.quantity_kwh[BUY])
    curve[2, :n_agents] = book.merit_per_kwh[BUY]
    curve = curve.reshape(3, -1)
    # Flat index k * B + community into the table's rows, k = the number of positions below.
    at = np.broadcast_to(np.arange(n_communities), volume_kwh.shape).copy()
    step = rows // 2 * n_communities
    while step >= n_communities:
        at += (np.take(curve[0], at + step) < volume_kwh) * step
        step //= 2
    demand_before_kwh, money_before, price = np.take(curve, at, axis=1)
    return money_before + price * (volume_kwh - demand_before_kwh)


def _running_sum(values: np.ndarray) -> np.ndarray:
    """Cumulative sum over the sorted positions (axis -2), adding in position order."""
    if values.shape[-1] < _ROW_LOOP_MIN_COMMUNITIES:
        return np.add.accumulate(values, axis=-2)
    out = values.copy()
    for m in range(1, out.shape[-2]):
        out[..., m, :] += out[..., m - 1, :]
    return out


def _level_running_sum(values: np.ndarray, continues_level: np.ndarray) -> np.ndarray:
    """Cumulative sum over positions (axis 0), restarting at every new price level."""
    out = values.copy()
    for m in range(1, len(out)):
        np.add(out[m], out[m - 1], out=out[m], where=continues_level[m])
    return out


def _spread_level_end(values: np.ndarray, continues_level: np.ndarray) -> np.ndarray:
    """Give every position (axis -2) the value at the last position of its price level.

    Without ties every level is one order and ``values`` itself is returned (callers only read it).
    """
    if not continues_level.any():
        return values
    out = values.copy()
    for m in range(out.shape[-2] - 2, -1, -1):
        np.copyto(out[..., m, :], out[..., m + 1, :], where=continues_level[..., m + 1, :])
    return out


def _unsorted(sorted_values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Scatter values at sorted positions, (..., N, B), back to the agents' layout (..., B, N)."""
    out = np.empty(sorted_values.size)
    out[index] = sorted_values
    return out.reshape(index.shape[:-2] + index.shape[-2:][::-1])


def _pool_price(side_kwh: np.ndarray, retail_per_kwh: np.ndarray, feed_in_per_kwh: np.ndarray,
                mid_per_kwh: np.ndarray, mechanism: str) -> np.ndarray:
    """(B,) the P2P price of a pooled rule (module docstring) from the community's total demand and supply."""
    if mechanism == "mid_market":
        return mid_per_kwh
    demand_kwh, supply_kwh = side_kwh.sum(axis=2)
    if mechanism == "bill_sharing":
        return np.where(demand_kwh > supply_kwh, retail_per_kwh,
                        np.where(supply_kwh > demand_kwh, feed_in_per_kwh, mid_per_kwh))
    # sdr: SDR capped at 1 (also where nobody demands) gives feed-in. The denominator is 0 only with no supply
    # and a zero feed-in tariff, where nothing trades; retail there keeps the price finite.
    ratio = np.minimum(np.divide(supply_kwh, demand_kwh, out=np.ones_like(supply_kwh), where=demand_kwh > 0), 1.0)
    denominator = (retail_per_kwh - feed_in_per_kwh) * ratio + feed_in_per_kwh
    return np.divide(feed_in_per_kwh * retail_per_kwh, denominator, out=np.array(retail_per_kwh, dtype=np.float64),
                     where=denominator > 0)


def _clear_pool(
    side_kwh: np.ndarray, price_per_kwh: np.ndarray, mid_price_per_kwh: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All trades at one price per community; the short side trades everything, the long side is scaled by
    short/long < 1. The reported price is the mid price where nothing trades."""
    total_kwh = side_kwh.sum(axis=2, keepdims=True)  # (2, B, 1): total demand, total supply
    other_side_total_kwh = total_kwh[::-1]
    fraction = np.divide(other_side_total_kwh, total_kwh, out=np.ones_like(total_kwh),
                         where=total_kwh > other_side_total_kwh)
    traded_kwh = side_kwh * fraction
    money = price_per_kwh[:, None] * traded_kwh
    traded = (total_kwh[:, :, 0] > 0.0).all(axis=0)
    return traded_kwh, money[BUY], money[SELL], np.where(traded, price_per_kwh, mid_price_per_kwh)
