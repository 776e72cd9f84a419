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
"""

from __future__ import annotations

import numpy as np

from p2p_marl.sim.auction import BUY, SELL
from p2p_marl.sim.feeder import Feeder, household_distance_ohm

# Share of the fee the buyer pays, for each payer.
_BUYER_SHARE = {"buyer": 1.0, "seller": 0.0, "both": 0.5}


def fee_matrix_per_kwh(feeder: Feeder, fee_per_kwh: float, basis: str) -> np.ndarray | None:
    """(N, N) fee per kWh from seller j to buyer i for the ``"distance"`` basis; None for ``"flat"`` (one rate)."""
    if basis == "flat":
        return None
    distance = household_distance_ohm(feeder)
    n = distance.shape[0]
    mean = distance.sum() / (n * (n - 1)) if n > 1 else 0.0
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
