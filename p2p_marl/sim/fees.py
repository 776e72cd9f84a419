"""Network charges on peer-to-peer trades: a per-kWh use-of-system fee on P2P volume, paid to the network
operator (it leaves the community), as configured by ``EnvConfig.p2p_fee_*``.

``p2p_fee_basis``:

``"flat"`` -- every P2P kWh costs ``p2p_fee_per_kwh``.
``"distance"`` -- a kWh from seller j to buyer i costs ``p2p_fee_per_kwh * d_ij / mean d``, with ``d_ij`` the
    electrical distance between their buses (``feeder.household_distance_ohm``) and ``mean d`` its mean over all
    pairs of different households, so that both bases charge the same on average over pairs. The market clears
    the community as a pool, not as bilateral contracts, so each buyer's P2P energy is allocated to the sellers
    in proportion to their P2P sales: ``flow_ij = buy_i * sell_j / V``, ``V`` the step's P2P volume.

``p2p_fee_payer``: ``"buyer"`` pays the fee of the energy it buys, ``"seller"`` of the energy it sells,
``"both"`` half each. The community pays the same total whoever pays; the payer only moves it between members.

The fee does not enter the clearing (bids and asks are what agents choose to send; a trader that expects a fee
prices it in), so a P2P price plus the fee can exceed retail: fees can make a trade worse than the grid, and
the optimum (``p2p_marl.baselines.optimal``) then leaves that step's trades to the grid.

The shared community battery (``shared_battery_*``) trades like a household and pays its fees like one; under
``"distance"`` its rate to a household is by the distance from its bus, scaled by the households' mean.

Loss charges (``loss_allocation``, ``loss_charges``): the feeder's losses of the step (``feeder_loss_kwh``, the
I^2 R estimate) priced at the step's retail price and charged to the households, paid to the utility (who buys
the energy lost; ``utility_revenue`` counts them). Each household's share is its weight over the energy all
households move through their meters, ``sum_n |net_kwh_n|``:

``"p2p_volume"`` -- weight ``p2p_buy_kwh + p2p_sell_kwh``: the households pay for the part of the losses their P2P
    trades carry, in proportion to their P2P volume; the rest, the grid energy's part, stays in the retail and
    feed-in tariffs as without loss allocation. A step without P2P trade charges nobody.
``"net_energy"`` -- weight ``|net_kwh|``: every household pays for its share of the whole loss, P2P and grid
    energy alike.

Both are continuous in the dispatch (no step switches a whole loss on or off), so the optimum's acted-out cost
(``p2p_marl.baselines.optimal``) is exact; the shared battery's own meter bears none.
"""

from __future__ import annotations

import numpy as np

from p2p_marl.sim.auction import BUY, SELL
from p2p_marl.sim.feeder import Feeder, FlowRows, household_distance_ohm

# Share of the fee the buyer pays, for each payer.
_BUYER_SHARE = {"buyer": 1.0, "seller": 0.0, "both": 0.5}


def fee_matrix_per_kwh(feeder: Feeder, fee_per_kwh: float, basis: str, rows: FlowRows | None = None
                       ) -> np.ndarray | None:
    """(N, N) fee per kWh from seller j to buyer i for the ``"distance"`` basis; None for ``"flat"`` (one rate).
    With ``rows`` (``p2p_marl.sim.feeder.flow_rows``) (P, P) over the households and the devices after them,
    scaled by the households' mean distance."""
    if basis == "flat":
        return None
    distance = household_distance_ohm(feeder, rows)
    n = feeder.n_households
    households = distance[:n, :n]
    mean = households.sum() / (n * (n - 1)) if n > 1 else 0.0
    # Every household on one bus: no distance to scale by, every pair pays the flat rate.
    return fee_per_kwh * (distance / mean if mean > 0 else np.ones_like(distance))


def p2p_fees(traded_kwh: np.ndarray, fee_per_kwh: float, fee_matrix: np.ndarray | None, payer: str) -> np.ndarray:
    """(B, N) each household's fee for the step from ``traded_kwh`` (2, B, N) = (P2P buy, P2P sell)."""
    if fee_matrix is None:
        buyer_fee, seller_fee = fee_per_kwh * traded_kwh[BUY], fee_per_kwh * traded_kwh[SELL]
    else:
        buy, sell = traded_kwh[BUY], traded_kwh[SELL]
        volume = buy.sum(axis=1, keepdims=True)
        # Pro-rata flows buy_i * sell_j / V: buyer i pays buy_i (fee @ sell / V)_i, seller j sell_j (buy / V @ fee)_j.
        # The shares are divided first: within [0, 1], they cannot overflow however small V is.
        buy_share, sell_share = (np.divide(side, volume, out=np.zeros_like(side), where=volume > 0)
                                 for side in (buy, sell))
        buyer_fee = buy * (sell_share @ fee_matrix.T)
        seller_fee = sell * (buy_share @ fee_matrix)
    share = _BUYER_SHARE[payer]
    return share * buyer_fee + (1.0 - share) * seller_fee


def loss_charges(loss_kwh: np.ndarray, price_per_kwh, net_kwh: np.ndarray, traded_kwh: np.ndarray,
                 allocation: str) -> np.ndarray:
    """(B, N) each household's charge for the step's feeder losses ``loss_kwh`` (B,) at ``price_per_kwh``, from the
    households' signed ``net_kwh`` (B, N) and P2P ``traded_kwh`` (2, B, N), by ``allocation`` (module docstring)."""
    moved_kwh = np.abs(net_kwh)
    weight = traded_kwh[BUY] + traded_kwh[SELL] if allocation == "p2p_volume" else moved_kwh
    total = moved_kwh.sum(axis=1, keepdims=True)
    share = np.divide(weight, total, out=np.zeros_like(weight), where=total > 0)
    return price_per_kwh * loss_kwh[:, None] * share
