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

Ties: orders with exactly equal limit prices form one price level that acts as a
single pooled order; whatever the level trades is shared pro-rata to the quantities of
its orders (so at the margin, tied orders are filled by the same fraction, and in
pay-as-bid tied sellers receive the same mean price). The result therefore does not
depend on the order of agents.

``ClearingResult.clearing_price_per_kwh`` is the uniform price, the volume-weighted
mean price (pay-as-bid) or the mid-market rate; when nothing clears it is the mid
price ``(feed_in + retail) / 2`` of the step, for every mechanism.

Implementation: each community's orders are sorted once by limit price (best bid
first, so asks run from worst to best); cumulative sums over the sorted positions give
the step curves, and the clearing is a few reductions over agents. Everything is
vectorised over B; the only Python loops run over the N sorted positions (each
iteration one operation on length-B rows, faster in numpy than a cumsum along a short
axis). Cost O(B N log N), except the pay-as-bid seller revenue, O(B N^2). Volumes are
never rounded above an agent's offer: ``0 <= p2p_buy_kwh <= max(net_kwh, 0)`` and
``0 <= p2p_sell_kwh <= max(-net_kwh, 0)`` hold exactly; the sums of buys and sells
(and of payments and revenues) agree up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MECHANISMS = ("uniform", "pay_as_bid", "mid_market")


@dataclass(frozen=True)
class ClearingResult:
    """Outcome of one clearing; every (B, N) array is zero for agents that do not trade."""

    p2p_buy_kwh: np.ndarray  # (B, N) >= 0, energy bought from peers
    p2p_sell_kwh: np.ndarray  # (B, N) >= 0, energy sold to peers
    p2p_payment: np.ndarray  # (B, N) money paid by buyers (>= 0 when prices are)
    p2p_revenue: np.ndarray  # (B, N) money received by sellers (>= 0 when prices are)
    clearing_price_per_kwh: np.ndarray  # (B,) see module docstring


@dataclass(frozen=True)
class _SortedBook:
    """Orders sorted by limit price, highest first; arrays (N, B), one community per column.

    A price level is a run of equal prices. The step curves are evaluated at each
    position's own price, including its whole level: D(p) is the demand bid at >= p,
    S(p) the supply asked at <= p.
    """

    price_per_kwh: np.ndarray  # limit price at each sorted position
    demand_kwh: np.ndarray  # max(net, 0) of the order at each position
    supply_kwh: np.ndarray  # max(-net, 0)
    continues_level: np.ndarray  # bool: same price as the position before
    demand_cum_kwh: np.ndarray  # demand at positions <= m
    supply_cum_from_end_kwh: np.ndarray  # supply at positions >= m
    demand_at_or_above_kwh: np.ndarray  # D(price_m)
    supply_at_or_below_kwh: np.ndarray  # S(price_m)
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
    mid_price_per_kwh = 0.5 * (retail_price_per_kwh + feed_in_price_per_kwh)
    if mechanism == "mid_market":
        return _clear_mid_market(net_kwh, mid_price_per_kwh)

    n_communities, n_agents = net_kwh.shape
    order = np.argsort(-limit_price_per_kwh, axis=1)  # best bid first
    # Flat (B, N) indices of the sorted orders, laid out (N, B): one gather sorts and
    # transposes, so that reductions over agents run along length-B rows.
    flat_index = np.ascontiguousarray((order + n_agents * np.arange(n_communities)[:, None]).T)
    sorted_net_kwh = net_kwh.ravel()[flat_index]
    book = _sorted_book(
        limit_price_per_kwh.ravel()[flat_index], np.maximum(sorted_net_kwh, 0.0), np.maximum(-sorted_net_kwh, 0.0)
    )
    buy_kwh, marginal_bid = _fill_side(book.demand_kwh, book.demand_at_or_above_kwh, book, best=np.max)
    sell_kwh, marginal_ask = _fill_side(book.supply_kwh, book.supply_at_or_below_kwh, book, best=np.min)
    traded = book.traded_kwh > 0.0
    if mechanism == "uniform":
        # Where nothing traded the marginal prices may be +-inf; substitute before mixing.
        marginal_bid = np.where(traded, marginal_bid, mid_price_per_kwh)
        marginal_ask = np.where(traded, marginal_ask, mid_price_per_kwh)
        price = np.where(traded, k * marginal_bid + (1.0 - k) * marginal_ask, mid_price_per_kwh)
        payment = price * buy_kwh
        revenue = price * sell_kwh
    else:
        payment = book.price_per_kwh * buy_kwh
        revenue = _pay_as_bid_revenue(book)
        total_buy_kwh = buy_kwh.sum(axis=0)
        bought = total_buy_kwh > 0.0
        price = np.where(bought, payment.sum(axis=0) / np.where(bought, total_buy_kwh, 1.0), mid_price_per_kwh)
    return ClearingResult(
        _unsorted(buy_kwh, flat_index),
        _unsorted(sell_kwh, flat_index),
        _unsorted(payment, flat_index),
        _unsorted(revenue, flat_index),
        price,
    )


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


def _sorted_book(price_per_kwh: np.ndarray, demand_kwh: np.ndarray, supply_kwh: np.ndarray) -> _SortedBook:
    """Step curves and efficient volume from orders already sorted by price, highest first."""
    continues_level = np.zeros(price_per_kwh.shape, dtype=bool)
    continues_level[1:] = price_per_kwh[1:] == price_per_kwh[:-1]
    demand_cum = _running_sum(demand_kwh)
    supply_cum_from_end = _running_sum(supply_kwh[::-1])[::-1]
    # A level's demand at or above its price ends at its last position; its supply at
    # or below its price starts at its first position.
    demand_at_or_above = _spread_level_end(demand_cum, continues_level)
    supply_at_or_below = _spread_level_start(supply_cum_from_end, continues_level)
    # min(D(p), S(p)) peaks at a bid price: between bids D is flat and S only grows.
    crossing_kwh = np.where(demand_kwh > 0.0, np.minimum(demand_at_or_above, supply_at_or_below), 0.0)
    return _SortedBook(
        price_per_kwh, demand_kwh, supply_kwh, continues_level, demand_cum, supply_cum_from_end,
        demand_at_or_above, supply_at_or_below, crossing_kwh.max(axis=0),
    )


def _fill_side(
    quantity_kwh: np.ndarray, cumulative_kwh: np.ndarray, book: _SortedBook, best: Callable[..., np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Fill one side of the book; best=np.max for bids (highest is best), np.min for asks.

    The cumulative curve (demand at >= own bid, or supply at <= own ask) grows as
    orders get worse, so the orders whose level's cumulative quantity stays below V
    fill completely, the best level that reaches V (the marginal one) fills pro-rata,
    and worse ones not at all. The curve values are the very numbers V was taken from,
    so these comparisons are consistent and the marginal fraction stays in [0, 1] under
    rounding. Returns the fills and the marginal limit price (+-inf if there is none).
    """
    traded_kwh = book.traded_kwh
    inside = cumulative_kwh < traded_kwh
    reaches_volume = (quantity_kwh > 0.0) & ~inside
    worst_price = -np.inf if best is np.max else np.inf
    marginal_price = best(np.where(reaches_volume, book.price_per_kwh, worst_price), axis=0)
    through_marginal_kwh = np.where(reaches_volume, cumulative_kwh, np.inf).min(axis=0)
    before_marginal_kwh = np.where(inside, cumulative_kwh, 0.0).max(axis=0)
    # through >= V > before wherever something trades; 0 / (positive or inf) elsewhere.
    marginal_fraction = (traded_kwh - before_marginal_kwh) / (through_marginal_kwh - before_marginal_kwh)
    fill_fraction = np.where(
        inside, 1.0, np.where(book.price_per_kwh == marginal_price, marginal_fraction, 0.0)
    )
    return quantity_kwh * fill_fraction, marginal_price


def _pay_as_bid_revenue(book: _SortedBook) -> np.ndarray:
    """Seller revenue when every matched kWh is priced at the bid of the buyer receiving it.

    Walking both sorted books in step, the seller level at price p holds the supply
    interval (S(p-), S(p)] and sells the part of it below V; that part is paid the
    integral of the bid curve over it. Each seller takes its quantity's share of its
    level's money, matching the pro-rata volumes.
    """
    supply_below_next = np.zeros_like(book.supply_cum_from_end_kwh)
    supply_below_next[:-1] = book.supply_cum_from_end_kwh[1:]
    supply_below_level = _spread_level_end(supply_below_next, book.continues_level)
    level_supply = _spread_level_end(_level_running_sum(book.supply_kwh, book.continues_level), book.continues_level)
    bounds_kwh = np.minimum(np.stack([book.supply_at_or_below_kwh, supply_below_level]), book.traded_kwh)
    money_upper, money_lower = _bid_money_up_to(book, bounds_kwh)
    share = np.divide(book.supply_kwh, level_supply, out=np.zeros_like(level_supply), where=level_supply > 0.0)
    return share * (money_upper - money_lower)


def _bid_money_up_to(book: _SortedBook, volume_kwh: np.ndarray) -> np.ndarray:
    """Integral of the bid curve from 0 to volume_kwh (any shape ending in B).

    Position m's bid covers the demand interval (demand_cum[m-1], demand_cum[m]];
    tied bids share one price, so their order within a level does not matter.
    """
    money = np.zeros_like(volume_kwh)
    covered_kwh = np.zeros_like(book.traded_kwh)
    for price, demand_cum in zip(book.price_per_kwh, book.demand_cum_kwh):
        money += price * np.maximum(np.minimum(volume_kwh, demand_cum) - covered_kwh, 0.0)
        covered_kwh = demand_cum
    return money


def _running_sum(values: np.ndarray) -> np.ndarray:
    """Cumulative sum over sorted positions (axis 0), as N additions of length-B rows."""
    out = values.copy()
    for m in range(1, len(out)):
        out[m] += out[m - 1]
    return out


def _level_running_sum(values: np.ndarray, continues_level: np.ndarray) -> np.ndarray:
    """Cumulative sum over positions, restarting at every new price level."""
    out = values.copy()
    for m in range(1, len(out)):
        np.add(out[m], out[m - 1], out=out[m], where=continues_level[m])
    return out


def _spread_level_start(values: np.ndarray, continues_level: np.ndarray) -> np.ndarray:
    """Give every position the value at the first position of its price level."""
    out = values.copy()
    for m in range(1, len(out)):
        np.copyto(out[m], out[m - 1], where=continues_level[m])
    return out


def _spread_level_end(values: np.ndarray, continues_level: np.ndarray) -> np.ndarray:
    """Give every position the value at the last position of its price level."""
    out = values.copy()
    for m in range(len(out) - 2, -1, -1):
        np.copyto(out[m], out[m + 1], where=continues_level[m + 1])
    return out


def _unsorted(sorted_values: np.ndarray, flat_index: np.ndarray) -> np.ndarray:
    """Scatter (N, B) sorted values back to the agents' (B, N) layout."""
    out = np.empty(sorted_values.size)
    out[flat_index] = sorted_values
    return out.reshape(flat_index.shape[::-1])


def _clear_mid_market(net_kwh: np.ndarray, mid_price_per_kwh: np.ndarray) -> ClearingResult:
    """All trades at the mid price; the short side trades everything, the long side is
    scaled by short/long < 1."""
    demand_kwh = np.maximum(net_kwh, 0.0)
    supply_kwh = np.maximum(-net_kwh, 0.0)
    total_demand_kwh = demand_kwh.sum(axis=1, keepdims=True)
    total_supply_kwh = supply_kwh.sum(axis=1, keepdims=True)
    buy_fraction = np.divide(
        total_supply_kwh, total_demand_kwh, out=np.ones_like(total_demand_kwh),
        where=total_demand_kwh > total_supply_kwh,
    )
    sell_fraction = np.divide(
        total_demand_kwh, total_supply_kwh, out=np.ones_like(total_supply_kwh),
        where=total_supply_kwh > total_demand_kwh,
    )
    buy_kwh = demand_kwh * buy_fraction
    sell_kwh = supply_kwh * sell_fraction
    price = mid_price_per_kwh[:, None]
    return ClearingResult(buy_kwh, sell_kwh, price * buy_kwh, price * sell_kwh, mid_price_per_kwh.copy())
