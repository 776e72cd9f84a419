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

Implementation: the step curves are evaluated at every agent's own limit price with
pairwise price comparisons (an (N, N, B) tensor), which needs no sorting and no Python
loop over B or N (N is a community, tens of agents). Volumes are never rounded above an agent's
offer: ``0 <= p2p_buy_kwh <= max(net_kwh, 0)`` and ``0 <= p2p_sell_kwh <=
max(-net_kwh, 0)`` hold exactly; sums of buys and sells agree up to float rounding.
"""

from __future__ import annotations

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
class _OrderBook:
    """Step curves evaluated at each agent's own limit price, agent-major (N, B) layout."""

    demand_kwh: np.ndarray  # (N, B) max(net, 0)
    supply_kwh: np.ndarray  # (N, B) max(-net, 0)
    price_ge: np.ndarray  # (N, N, B) bool, [j, i, b]: limit_j >= limit_i
    price_le: np.ndarray  # (N, N, B) bool, [j, i, b]: limit_j <= limit_i
    demand_at_or_above_kwh: np.ndarray  # (N, B) D(limit_i): demand bid at >= limit_i
    supply_at_or_below_kwh: np.ndarray  # (N, B) S(limit_i): supply asked at <= limit_i
    traded_kwh: np.ndarray  # (B,) efficient volume V


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
    # Work agent-major, (N, B): reductions over the N agents then run as elementwise
    # operations on length-B rows, several times faster than reducing short rows.
    net_kwh = np.ascontiguousarray(net_kwh.T)
    limit_price_per_kwh = np.ascontiguousarray(limit_price_per_kwh.T)
    mid_price_per_kwh = 0.5 * (retail_price_per_kwh + feed_in_price_per_kwh)
    demand_kwh = np.maximum(net_kwh, 0.0)
    supply_kwh = np.maximum(-net_kwh, 0.0)
    if mechanism == "mid_market":
        buy_kwh, sell_kwh = _mid_market_volumes(demand_kwh, supply_kwh)
        payment = mid_price_per_kwh * buy_kwh
        revenue = mid_price_per_kwh * sell_kwh
        price = mid_price_per_kwh.copy()
    else:
        book = _order_book(demand_kwh, supply_kwh, limit_price_per_kwh)
        buy_kwh, marginal_bid = _fill_side(
            demand_kwh, book.demand_at_or_above_kwh, book.traded_kwh, limit_price_per_kwh, sign=1.0
        )
        sell_kwh, marginal_ask = _fill_side(
            supply_kwh, book.supply_at_or_below_kwh, book.traded_kwh, limit_price_per_kwh, sign=-1.0
        )
        traded = book.traded_kwh > 0.0
        if mechanism == "uniform":
            # Where nothing traded the marginal prices may be +-inf; substitute before mixing.
            marginal_bid = np.where(traded, marginal_bid, mid_price_per_kwh)
            marginal_ask = np.where(traded, marginal_ask, mid_price_per_kwh)
            price = np.where(traded, k * marginal_bid + (1.0 - k) * marginal_ask, mid_price_per_kwh)
            payment = price * buy_kwh
            revenue = price * sell_kwh
        else:
            payment = limit_price_per_kwh * buy_kwh
            revenue = _pay_as_bid_revenue(book, limit_price_per_kwh, sell_kwh)
            mean_price = payment.sum(axis=0) / np.where(traded, buy_kwh.sum(axis=0), 1.0)
            price = np.where(traded, mean_price, mid_price_per_kwh)
    return ClearingResult(
        np.ascontiguousarray(buy_kwh.T),
        np.ascontiguousarray(sell_kwh.T),
        np.ascontiguousarray(payment.T),
        np.ascontiguousarray(revenue.T),
        price,
    )


def _validated(net_kwh, limit_price_per_kwh, retail_price_per_kwh, feed_in_price_per_kwh, mechanism, k):
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


def _order_book(demand_kwh: np.ndarray, supply_kwh: np.ndarray, limit_price_per_kwh: np.ndarray) -> _OrderBook:
    # Agents without an order have zero quantity, so their limit prices never count.
    price_ge = limit_price_per_kwh[:, None, :] >= limit_price_per_kwh[None, :, :]
    price_le = limit_price_per_kwh[:, None, :] <= limit_price_per_kwh[None, :, :]
    demand_at_or_above = (demand_kwh[:, None, :] * price_ge).sum(axis=0)
    supply_at_or_below = (supply_kwh[:, None, :] * price_le).sum(axis=0)
    # min(D(p), S(p)) peaks at a bid price: between bids D is flat and S only grows.
    crossing_kwh = np.where(demand_kwh > 0.0, np.minimum(demand_at_or_above, supply_at_or_below), 0.0)
    return _OrderBook(
        demand_kwh, supply_kwh, price_ge, price_le, demand_at_or_above, supply_at_or_below, crossing_kwh.max(axis=0)
    )


def _fill_side(quantity_kwh, cumulative_kwh, traded_kwh, limit_price_per_kwh, sign: float):
    """Fill one side of the book: sign=+1 for bids (best = highest), -1 for asks (best = lowest).

    The cumulative curve (demand at >= own bid, or supply at <= own ask) grows as
    orders get worse, so the marginal level is the best one whose cumulative quantity
    reaches V; better levels (cumulative < V) fill completely, the marginal level
    pro-rata, worse ones not at all. All curve values come from the same arrays as V,
    so these comparisons are consistent and the marginal fraction stays in [0, 1]
    under rounding. Returns the fills and the marginal limit price (+-inf if none).
    """
    has_order = quantity_kwh > 0.0
    reaches_volume = has_order & (cumulative_kwh >= traded_kwh)
    score = sign * limit_price_per_kwh  # higher score = better order
    marginal_score = np.where(reaches_volume, score, -np.inf).max(axis=0)
    through_marginal_kwh = np.where(reaches_volume, cumulative_kwh, np.inf).min(axis=0)
    before_marginal_kwh = np.where(has_order & ~reaches_volume, cumulative_kwh, 0.0).max(axis=0)
    # through >= V > before wherever something trades; 0 / (positive or inf) elsewhere.
    marginal_fraction = (traded_kwh - before_marginal_kwh) / (through_marginal_kwh - before_marginal_kwh)
    fill_fraction = np.where(
        score > marginal_score, 1.0, np.where(score == marginal_score, marginal_fraction, 0.0)
    )
    return quantity_kwh * fill_fraction, sign * marginal_score


def _pay_as_bid_revenue(book: _OrderBook, limit_price_per_kwh: np.ndarray, sell_kwh: np.ndarray) -> np.ndarray:
    """Seller revenue when every matched kWh is priced at the bid of the buyer receiving it.

    Walking both sorted books in step, buyer level i occupies the demand interval
    (D(bid_i+), D(bid_i)] and seller level j the supply interval (S(ask_j-), S(ask_j)];
    they trade the overlap of the two intervals within (0, V]. Each order takes the
    share of its level proportional to its quantity.
    """
    price_eq = book.price_ge & book.price_le
    demand_above = (book.demand_kwh[:, None, :] * ~book.price_le).sum(axis=0)
    supply_below = (book.supply_kwh[:, None, :] * ~book.price_ge).sum(axis=0)
    level_demand = (book.demand_kwh[:, None, :] * price_eq).sum(axis=0)
    level_supply = (book.supply_kwh[:, None, :] * price_eq).sum(axis=0)
    demand_share = np.divide(book.demand_kwh, level_demand, out=np.zeros_like(level_demand), where=level_demand > 0)
    supply_share = np.divide(book.supply_kwh, level_supply, out=np.zeros_like(level_supply), where=level_supply > 0)

    # matched_kwh[i, j, b]: energy of buyer i's level matched with seller j's level.
    upper_kwh = np.minimum(
        np.minimum(book.demand_at_or_above_kwh[:, None, :], book.supply_at_or_below_kwh[None, :, :]), book.traded_kwh
    )
    lower_kwh = np.maximum(demand_above[:, None, :], supply_below[None, :, :])
    matched_kwh = np.maximum(upper_kwh - lower_kwh, 0.0)
    bid_money_per_kwh = limit_price_per_kwh * demand_share  # buyer i's bid, weighted by its share
    revenue = supply_share * (bid_money_per_kwh[:, None, :] * matched_kwh).sum(axis=0)
    # Sellers that sold nothing get nothing (guards against overlaps of rounding size).
    return np.where(sell_kwh > 0.0, revenue, 0.0)


def _mid_market_volumes(demand_kwh: np.ndarray, supply_kwh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The short side trades everything; the long side is scaled by short/long < 1."""
    total_demand_kwh = demand_kwh.sum(axis=0)
    total_supply_kwh = supply_kwh.sum(axis=0)
    buy_fraction = np.divide(
        total_supply_kwh, total_demand_kwh, out=np.ones_like(total_demand_kwh), where=total_demand_kwh > total_supply_kwh
    )
    sell_fraction = np.divide(
        total_demand_kwh, total_supply_kwh, out=np.ones_like(total_supply_kwh), where=total_supply_kwh > total_demand_kwh
    )
    return demand_kwh * buy_fraction, supply_kwh * sell_fraction
