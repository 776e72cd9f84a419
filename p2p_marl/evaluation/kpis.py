"""Key performance indicators of a day of community operation, computed from the infos of an episode.

Input: ``infos`` as returned by :func:`p2p_marl.evaluation.rollout.rollout`, every key an array (B days, T steps,
N households) in the units of ``p2p_marl.sim.community.INFO_KEYS`` (energy in kWh per step, money per step,
prices per kWh; community-wide keys such as ``clearing_price`` and ``feeder_*`` are repeated over N). Output: one
value per day, shape (B,). Notation for day b: sums run over its steps t and households n,

    E_load = sum load_kwh          E_pv  = sum pv_kwh
    E_imp  = sum grid_import_kwh   E_exp = sum grid_export_kwh     V_p2p = sum p2p_buy_kwh

KPIs (name: formula [unit]):

- ``community_cost``: sum cost [money/day]: energy bills, P2P payments net of receipts (these cancel within the
  community), battery degradation, network penalties and the end-of-day settlement of stored energy, exactly
  the negative of the summed rewards.
- ``end_settlement`` = sum end_settlement [money/day]: what the batteries paid (> 0) for ending the day below
  their start energy, or were credited (< 0) for ending above it (see ``p2p_marl.sim.community``).
- ``pv_curtailed_kwh`` = sum pv_curtailed_kwh [kWh/day]: PV spilled at the inverters.
- ``grid_import_kwh`` = E_imp, ``grid_export_kwh`` = E_exp [kWh/day]: energy billed by / sold to the grid.
- ``self_sufficiency`` = 1 - min(E_imp / E_load, 1) [-]: the share of the community's load not supplied by
  grid import. Energy imported into batteries counts as grid supply whenever it is used; imports beyond the
  day's load (batteries filled from the grid and kept, or their losses) cannot make the share negative, it is 0.
  NaN on a day without load.
- ``self_consumption`` = 1 - min(E_exp / E_pv, 1) [-]: the share of PV generation used inside the community
  (by its own household, a battery or a peer) rather than exported to the grid. Battery energy exported to the
  grid counts as exported PV; exports beyond the day's PV give 0. NaN on a day without PV.
- ``p2p_volume_kwh`` = V_p2p [kWh/day]: energy traded between households.
- ``p2p_share_of_demand`` = V_p2p / E_load [-]: the share of the community's load bought from peers; NaN on a
  day without load.
- ``clearing_price_mean``, ``clearing_price_std`` [money/kWh]: mean and standard deviation of the clearing
  price over the day's steps, weighted by the P2P volume v_t of each step:
  mean = sum_t v_t p_t / V_p2p, std = sqrt(sum_t v_t (p_t - mean)^2 / V_p2p). The mean is therefore the
  average price P2P energy actually traded at. Steps without trade carry no weight (the environment reports
  a nominal mid price there); on a day without any P2P trade both are NaN.
- ``peak_grid_import_kw`` = max_t max(sum_n (grid_import_kwh - grid_export_kwh), 0) / dt_h [kW]: the highest
  net power drawn through the substation in a step (simultaneous import and export of different households
  cancel physically, so this is the transformer's load, not the billed import).
- ``network_penalty`` = sum penalty [money/day]: the environment's voltage and overload penalties.
- ``voltage_violation_steps`` [steps]: the number of steps in which any bus is outside [v_min_pu, v_max_pu] by at
  least ``VIOLATION_TOLERANCE`` p.u. (summed over the buses).
- ``voltage_violation_pu`` = sum_t (undervoltage_t + overvoltage_t) [p.u. x steps]: the band excess summed over
  the buses and the steps of the day.
- ``line_overload_steps`` [steps]: the number of steps in which any feeder element (a line or the substation
  transformer) carries more than its rating (by at least ``VIOLATION_TOLERANCE`` kVA, summed over the elements).
- ``line_overload_kvah`` = sum_t overload_kva_t * dt_h [kVAh]: the overload of all lines and the transformer,
  summed over elements and integrated over the day.
- ``violation_day`` [-]: 1 on a day with a voltage violation step or an overload step, else 0 (its mean over
  days is the share of days on which the feeder's limits were broken).
- ``p2p_fee`` = sum p2p_fee [money/day]: the network charges on P2P trades the community paid (market design,
  ``p2p_marl.sim.fees``; 0 without a fee).
- ``feeder_loss_kwh`` = sum_t feeder_loss_kwh_t [kWh/day]: the feeder's line losses (I^2 R estimate).
- ``grid_energy_cost`` = sum (grid_import_kwh * retail_price - grid_export_kwh * feed_in_price) [money/day]:
  the community's energy bill with the grid, retail purchases minus feed-in sales.
- ``utility_revenue`` = grid_energy_cost + p2p_fee + loss_charge [money/day]: what the grid side (retailer and
  network operator) takes from the community: retail sales plus fees minus feed-in payments (plus loss charges,
  with loss allocation).
- ``loss_charge`` = sum loss_charge [money/day]: the households' charges for the feeder's losses, paid to the
  utility (``loss_allocation``; 0 without, when infos carry no ``loss_charge``).
- ``battery_wear_cost`` = sum degradation_cost [money/day]: the households' batteries' wear.
- ``other_cost`` = community_cost - (grid_energy_cost + p2p_fee + loss_charge + battery_wear_cost
  + network_penalty + end_settlement) [money/day]: the shared battery's wear and end-of-day settlement, 0
  without one (P2P payments cancel within the community under every clearing rule). With it, these seven
  parts are the community cost (``COST_PARTS``), the breakdown that shows where a method's cost, and its gap to
  the optimum, comes from.

With a shared community battery (infos with ``SHARED_BATTERY_INFO_KEYS``, ``p2p_marl.sim.community``) its meter
is part of the community's: its grid import and export count in E_imp, E_exp, ``peak_grid_import_kw`` and
``utility_revenue``, its P2P purchases in V_p2p and the P2P price, its fees in ``p2p_fee``; and

- ``shared_battery_throughput_kwh`` = sum_t (shared_battery_charge_kwh + shared_battery_discharge_kwh) [kWh/day].
- ``shared_battery_bill`` = sum_t shared_battery_bill [money/day]: its bill, within ``community_cost`` (each
  household's cost carries 1 / N of it).
- ``shared_battery_soc_min``, ``shared_battery_soc_max`` [-]: its lowest and highest SoC after a step.

With the grid-only reference (each household's bill on the same day under the grid-only benchmark,
``grid_only_bills`` (B, N), see :func:`agent_bills`):

- ``saving_vs_grid_only`` = sum_n (bill_grid_only_n - bill_n) [money/day].
- ``savings_gini`` [-]: fairness of the per-household savings s_n = bill_grid_only_n - bill_n, see
  :func:`gini`: 0 when every household saves the same, towards 1 when one household takes all of it.
- ``savings_jain`` [-]: Jain's index of the savings, (sum_n s_n)^2 / (N sum_n s_n^2), see :func:`jain_index`:
  1 when every household saves the same, 1/N when one takes all, lower still when some lose what others gain.
- ``share_worse_off`` [-]: the share of households whose bill exceeds their grid-only bill (s_n < 0, beyond
  ``WORSE_OFF_TOLERANCE``).

With also the optimal reference (``optimal_cost`` (B,), the perfect-foresight LP's community cost):

- ``share_of_optimal_saving``, see :func:`share_of_optimal_saving`.
"""

from __future__ import annotations

import numpy as np

from p2p_marl.sim.community import INFO_KEYS

# Relative size below which the optimal saving counts as zero: the LP's own accuracy is 1e-6 relative.
OPTIMAL_SAVING_RTOL = 1e-6
# Money per day below which a household's loss against grid-only is rounding, not a loss.
WORSE_OFF_TOLERANCE = 1e-9
# Excess beyond the feeder's limits (p.u. of voltage, kVA of loading) below which a step does not count as a
# violation: the optimum plans to the band's edge, and its replay lands up to a float rounding step (2.2e-16 p.u.)
# beyond it. The magnitudes (``voltage_violation_pu``, ``line_overload_kvah``) and the penalty stay exact.
VIOLATION_TOLERANCE = 1e-9
# The parts the community cost is made of (money/day KPIs summing to ``community_cost``), ``other_cost`` last.
COST_PARTS = ("grid_energy_cost", "battery_wear_cost", "network_penalty", "end_settlement", "p2p_fee", "loss_charge",
              "other_cost")


def _check_infos(infos: dict[str, np.ndarray]) -> tuple[int, int, int]:
    missing = [key for key in INFO_KEYS if key not in infos]
    if missing:
        raise ValueError(f"infos lack the key(s) {missing}; expected the (B, T, N) arrays of rollout()")
    shape = np.shape(infos["cost"])
    if len(shape) != 3:
        raise ValueError(f"infos['cost'] must have shape (B days, T steps, N households), got {shape}")
    for key in INFO_KEYS:
        if np.shape(infos[key]) != shape:
            raise ValueError(f"infos[{key!r}] has shape {np.shape(infos[key])}, but infos['cost'] has {shape}")
    return shape


def _feeder_excess(infos: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(B, T) each step's voltage-band excess summed over the buses [p.u.] and overload summed over the lines and the
    transformer [kVA] (community-wide keys: household 0's)."""
    voltage_excess_pu = (np.asarray(infos["feeder_undervoltage_pu"])[:, :, 0]
                         + np.asarray(infos["feeder_overvoltage_pu"])[:, :, 0])
    return voltage_excess_pu, np.asarray(infos["feeder_overload_kva"])[:, :, 0]


def feeder_violation_steps(infos: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(B, T) whether each step leaves the voltage band, and whether it overloads a line or the transformer, by at
    least ``VIOLATION_TOLERANCE``."""
    return _beyond_tolerance(*_feeder_excess(infos))


def _beyond_tolerance(voltage_excess_pu: np.ndarray, overload_kva: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return voltage_excess_pu >= VIOLATION_TOLERANCE, overload_kva >= VIOLATION_TOLERANCE


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (the ratio is undefined there)."""
    return np.divide(numerator, denominator, out=np.full(np.shape(numerator), np.nan), where=denominator > 0)


def agent_bills(infos: dict[str, np.ndarray]) -> np.ndarray:
    """Each household's bill for each day (B, N) [money/day]: the sum of its step costs."""
    _check_infos(infos)
    return np.asarray(infos["cost"]).sum(axis=1)


def gini(values: np.ndarray) -> np.ndarray:
    """Gini coefficient over the last axis, defined for values of any sign (e.g. savings, some negative).

        G = sum_i sum_j |x_i - x_j| / (2 N sum_i |x_i|)

    This is the normalisation of Raffinetti, Siletti & Vernizzi (2015, Statistical Methods & Applications 24):
    for non-negative values it is exactly the classic Gini (sum |x_i - x_j| / (2 N^2 mean)), and since
    |x_i - x_j| <= |x_i| + |x_j| it stays within [0, 1] when some values are negative, where the classic
    formula's mean can be zero or negative. A household that loses money therefore raises the inequality
    instead of being clipped away. All values zero (nobody saves anything) is perfect equality: 0.
    """
    x = np.sort(np.asarray(values, dtype=np.float64), axis=-1)
    n = x.shape[-1]
    # With x sorted ascending, sum_ij |x_i - x_j| = 2 sum_i (2 i - n - 1) x_(i), i = 1..n.
    rank_weight = 2.0 * np.arange(1, n + 1) - n - 1
    half_pair_difference_sum = (rank_weight * x).sum(axis=-1)
    scale = n * np.abs(x).sum(axis=-1)
    ratio = np.divide(half_pair_difference_sum, scale, out=np.zeros(x.shape[:-1]), where=scale > 0)
    # Mathematically within [0, 1]; the clip only removes rounding residue (e.g. -1e-17 for equal values).
    return np.clip(ratio, 0.0, 1.0)


def jain_index(values: np.ndarray) -> np.ndarray:
    """Jain's fairness index over the last axis, (sum x)^2 / (N sum x^2): 1 when all values are equal (all zero
    included), 1/N when one value holds everything; within [0, 1] for values of any sign (Cauchy-Schwarz),
    lower where some are negative."""
    x = np.asarray(values, dtype=np.float64)
    # The index does not change with the scale: dividing by the largest magnitude keeps tiny savings' squares
    # from underflowing (and large ones from overflowing).
    peak = np.abs(x).max(axis=-1, keepdims=True)
    x = np.divide(x, peak, out=np.zeros_like(x), where=peak > 0)
    squares = (x**2).sum(axis=-1)
    return np.divide(x.sum(axis=-1) ** 2, x.shape[-1] * squares, out=np.ones(x.shape[:-1]), where=squares > 0)


def share_of_optimal_saving(cost: np.ndarray, grid_only_cost: np.ndarray, optimal_cost: np.ndarray) -> np.ndarray:
    """(cost_grid_only - cost) / (cost_grid_only - cost_optimal), elementwise [-].

    1 = the method saves all that perfect foresight can save, 0 = no better than grid-only, < 0 = worse than
    grid-only. It can exceed 1 only if a method gains more by violating the network limits (which the optimum
    respects as hard constraints) than it pays in penalties.

    Undefined days are NaN: where the optimal saving is not above ``OPTIMAL_SAVING_RTOL * (|cost_grid_only| +
    |cost_optimal|)`` there is nothing (or, within solver accuracy, nothing) to save, e.g. a community without
    batteries or PV, and any ratio would be noise. Aggregates over days skip them (see
    ``p2p_marl.evaluation.report.summarize``) and report how many days were defined.
    """
    cost, grid_only_cost, optimal_cost = np.broadcast_arrays(
        np.asarray(cost, dtype=np.float64), np.asarray(grid_only_cost, dtype=np.float64),
        np.asarray(optimal_cost, dtype=np.float64))
    optimal_saving = grid_only_cost - optimal_cost
    defined = optimal_saving > OPTIMAL_SAVING_RTOL * (np.abs(grid_only_cost) + np.abs(optimal_cost))
    return np.divide(grid_only_cost - cost, optimal_saving, out=np.full(cost.shape, np.nan), where=defined)


def day_kpis(infos: dict[str, np.ndarray], dt_h: float, grid_only_bills: np.ndarray | None = None,
             optimal_cost: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """KPI name -> (B,) values for each day of ``infos`` (see the module docstring for every definition).

    ``grid_only_bills`` (B, N): the grid-only benchmark's bills of the same days (``agent_bills`` of its infos),
    adds ``saving_vs_grid_only`` and ``savings_gini``. ``optimal_cost`` (B,): the optimum's community cost of
    the same days, adds ``share_of_optimal_saving`` (needs ``grid_only_bills`` too).
    """
    n_days, _, n_agents = _check_infos(infos)
    if not (np.isfinite(dt_h) and dt_h > 0):
        raise ValueError(f"dt_h must be a positive number of hours, got {dt_h!r}")
    if optimal_cost is not None and grid_only_bills is None:
        raise ValueError("optimal_cost needs grid_only_bills too: the share of the optimal saving is measured "
                         "from the grid-only cost")
    bills = agent_bills(infos)
    # The community cost is summed from the bills exactly as for the grid-only reference, so that the
    # grid-only benchmark's saving is exactly 0 and not a rounding residue.
    community_cost = bills.sum(axis=1)
    # The community's meters, (B, T, M): the households', then the shared battery's if there is one (its
    # community values are repeated over the households: one column of them).
    shared = "shared_battery_bill" in infos
    meters = {key: np.asarray(infos[key]) if not shared else
              np.concatenate([infos[key], np.asarray(infos[f"shared_battery_{key}"])[:, :, :1]], axis=2)
              for key in ("grid_import_kwh", "grid_export_kwh", "p2p_buy_kwh", "p2p_fee")}
    total = {key: np.asarray(infos[key]).sum(axis=(1, 2)) for key in
             ("load_kwh", "pv_kwh", "pv_curtailed_kwh", "penalty", "end_settlement", "degradation_cost")}
    total.update({key: values.sum(axis=(1, 2)) for key, values in meters.items()})
    # Community-wide quantities are repeated over households; read them from the first.
    step_p2p_kwh = meters["p2p_buy_kwh"].sum(axis=2)
    clearing_price = np.asarray(infos["clearing_price"])[:, :, 0]
    retail_price = np.asarray(infos["retail_price"])[:, :, 0]
    price_mean = _ratio((step_p2p_kwh * clearing_price).sum(axis=1), total["p2p_buy_kwh"])
    price_var = _ratio((step_p2p_kwh * (clearing_price - price_mean[:, None]) ** 2).sum(axis=1),
                       total["p2p_buy_kwh"])
    net_import_kwh = (meters["grid_import_kwh"] - meters["grid_export_kwh"]).sum(axis=2)
    loss_charge = np.asarray(infos["loss_charge"]).sum(axis=(1, 2)) if "loss_charge" in infos else np.zeros(n_days)
    voltage_excess_pu, overload_kva = _feeder_excess(infos)
    voltage_broken, overload_broken = _beyond_tolerance(voltage_excess_pu, overload_kva)
    grid_energy_cost = (meters["grid_import_kwh"].sum(axis=2) * retail_price
                        - meters["grid_export_kwh"].sum(axis=2) * np.asarray(infos["feed_in_price"])[:, :, 0]
                        ).sum(axis=1)

    kpis = {
        "community_cost": community_cost,
        "end_settlement": total["end_settlement"],
        "pv_curtailed_kwh": total["pv_curtailed_kwh"],
        "grid_import_kwh": total["grid_import_kwh"],
        "grid_export_kwh": total["grid_export_kwh"],
        "self_sufficiency": 1.0 - np.minimum(_ratio(total["grid_import_kwh"], total["load_kwh"]), 1.0),
        "self_consumption": 1.0 - np.minimum(_ratio(total["grid_export_kwh"], total["pv_kwh"]), 1.0),
        "p2p_volume_kwh": total["p2p_buy_kwh"],
        "p2p_share_of_demand": _ratio(total["p2p_buy_kwh"], total["load_kwh"]),
        "clearing_price_mean": price_mean,
        "clearing_price_std": np.sqrt(price_var),
        "peak_grid_import_kw": np.maximum(net_import_kwh.max(axis=1), 0.0) / dt_h,
        "network_penalty": total["penalty"],
        "voltage_violation_steps": voltage_broken.sum(axis=1).astype(np.float64),
        "voltage_violation_pu": voltage_excess_pu.sum(axis=1),
        "line_overload_steps": overload_broken.sum(axis=1).astype(np.float64),
        "line_overload_kvah": overload_kva.sum(axis=1) * dt_h,
        "violation_day": (voltage_broken | overload_broken).any(axis=1).astype(np.float64),
        "p2p_fee": total["p2p_fee"],
        "feeder_loss_kwh": np.asarray(infos["feeder_loss_kwh"])[:, :, 0].sum(axis=1),
        "grid_energy_cost": grid_energy_cost,
        "utility_revenue": grid_energy_cost + total["p2p_fee"] + loss_charge,
        "loss_charge": loss_charge,
        "battery_wear_cost": total["degradation_cost"],
    }
    kpis["other_cost"] = community_cost - sum(kpis[part] for part in COST_PARTS[:-1])
    if shared:
        kpis["shared_battery_throughput_kwh"] = (np.asarray(infos["shared_battery_charge_kwh"])[:, :, 0]
                                                 + np.asarray(infos["shared_battery_discharge_kwh"])[:, :, 0]
                                                 ).sum(axis=1)
        kpis["shared_battery_bill"] = np.asarray(infos["shared_battery_bill"])[:, :, 0].sum(axis=1)
        soc = np.asarray(infos["shared_battery_soc"])[:, :, 0]
        kpis["shared_battery_soc_min"], kpis["shared_battery_soc_max"] = soc.min(axis=1), soc.max(axis=1)
    if grid_only_bills is not None:
        grid_only_bills = np.asarray(grid_only_bills, dtype=np.float64)
        if grid_only_bills.shape != (n_days, n_agents):
            raise ValueError(f"grid_only_bills must have shape (B, N) = {(n_days, n_agents)}, "
                             f"got {grid_only_bills.shape}")
        savings = grid_only_bills - bills
        kpis["saving_vs_grid_only"] = savings.sum(axis=1)
        kpis["savings_gini"] = gini(savings)
        kpis["savings_jain"] = jain_index(savings)
        kpis["share_worse_off"] = (savings < -WORSE_OFF_TOLERANCE).mean(axis=1)
        if optimal_cost is not None:
            optimal_cost = np.asarray(optimal_cost, dtype=np.float64)
            if optimal_cost.shape != (n_days,):
                raise ValueError(f"optimal_cost must have shape (B,) = ({n_days},), got {optimal_cost.shape}")
            kpis["share_of_optimal_saving"] = share_of_optimal_saving(
                community_cost, grid_only_bills.sum(axis=1), optimal_cost)
    return kpis
