"""Model-predictive control: the classical controller with the same information as every other method.

At every step t, for every community, the optimal-dispatch LP of ``p2p_marl.baselines.optimal`` is solved over
the rest of the episode (steps t .. T-1) on the day as a forecaster knows it at t (step t's own load and PV are
metered, later steps are forecast; see ``p2p_marl.sim.forecasts``), from the energy stored now, with the same
battery, feeder, curtailment and end-of-day settlement as the perfect-foresight optimum. Its first step is
applied as ``OptimalPolicy`` applies a step (setpoint and curtailment shares; bid retail when the household
is a net buyer, ask feed-in when a net seller), and the next step plans again. With the ``oracle`` forecaster
MPC is the perfect-foresight optimum (every re-plan continues an optimal schedule); with any other it pays
for its forecast errors. A shared community battery is planned with the rest (``act_operator`` applies its
first step, from the same LP), except by the household MPC (below).

The household MPC (``household=True``, the benchmark ``mpc_household``) is the decentralised controller with the
information each learner's actor has: every household plans only its own battery and curtailment, on its own
metered step and forecasts, paying retail for what its own meter imports and paid the feed-in tariff for what it
exports (``solve_dispatch(..., separate_meters=True)`` without the network, a sum of independent per-household
programs: the LP solves all of a community's at once, and no household's plan depends on another's forecast). It
cannot plan the feeder, which takes every household's power, nor count on P2P prices, which take every household's
bids; it bids truthfully (retail while it plans to import, feed-in while it plans to export; where a P2P fee is
above the tariffs' spread, bids that never cross), so the market still matches the neighbours whose plans cross. A
home energy management system of each household's own. A shared battery is no household's: the household MPC
leaves it to its own control rule (``act_operator`` returns None).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from p2p_marl.baselines.optimal import DispatchProblem, OptimalSchedule, check_power_smoothing, solve_dispatch
from p2p_marl.config import ConfigError, FORECASTERS
from p2p_marl.progress import Progress
from p2p_marl.sim.community import ACTION_DIM, CommunityCore
from p2p_marl.sim.forecasts import Forecaster, build_forecaster


def played_step_kw(core: CommunityCore, action: np.ndarray) -> np.ndarray:
    """(B, 3, N) each household's charge, discharge and curtailed PV (kW) that ``action`` plays in the step now:
    the first step that a plan around another controller's step fixes (``MPCPolicy.plans``)."""
    charge_kw, discharge_kw = core.battery_power_kw(action)
    pv_kw = core.profiles.pv_kw[core.days, core.t]  # metered: the truth, as the plan's first step has it
    return np.stack([charge_kw, discharge_kw, core.curtailed_power_kw(action, pv_kw)], axis=1)


class MPCPolicy:
    """Receding-horizon optimal dispatch on ``forecaster``'s forecasts (a ``Policy``; one LP per community and
    step). ``forecaster`` None uses the environment's own (``core.forecaster``); a name builds that forecaster
    over the core's profiles with the environment's forecast settings, changed by ``forecast_settings``
    (``EnvConfig`` keys, e.g. ``{"forecast_nrmse": 0.1}``). ``household`` plans every household alone (see the
    module docstring), which needs ``network=False``. ``power_smoothing_per_kwh`` > 0 breaks each plan's ties
    towards spread battery power (``p2p_marl.baselines.optimal``: MPC as a teacher). ``threads`` > 1 solves that
    many communities' LPs at a time (HiGHS runs without Python's lock; each LP is solved alone, so the plans are
    the same)."""

    def __init__(self, forecaster: str | None = None, network: bool = True, progress: bool = False,
                 forecast_settings: dict[str, Any] | None = None, household: bool = False, threads: int = 1,
                 power_smoothing_per_kwh: float = 0.0):
        check_power_smoothing(power_smoothing_per_kwh)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        if household and network:
            raise ValueError("a household plans alone, without the feeder (which takes every household's power): "
                             "household=True needs network=False")
        if forecaster is not None and forecaster not in FORECASTERS:
            raise ValueError(f"unknown forecaster {forecaster!r}; choose one of {list(FORECASTERS)}")
        if forecast_settings and forecaster is None:
            raise ValueError("forecast_settings need a forecaster name")
        other = sorted(key for key in forecast_settings or {} if not key.startswith("forecast_"))
        if other:
            raise ValueError(f"forecast_settings take forecast_* keys of EnvConfig only, got {other}")
        self.forecaster_name = forecaster
        self.forecast_settings = dict(forecast_settings or {})
        scope = "mpc_household" if household else "mpc"
        self.name = f"{scope}_{forecaster}" if forecaster else scope
        self.network = network
        self.household = household
        self.threads = threads
        self.power_smoothing_per_kwh = power_smoothing_per_kwh
        # Made once an episode: HiGHS starts a scheduler in every thread that solves.
        self._pool: ThreadPoolExecutor | None = None
        self.progress = progress
        self._forecaster: Forecaster | None = None
        self._bar: Progress | None = None
        self._operator_action = np.zeros((0, 2))  # the shared battery's first step of the latest plans ...
        self._planned_step = -1  # ... made at this step
        self.planned_cost = np.zeros(0)  # (B,) the cost of the plans whose first step act played last

    def reset(self, core: CommunityCore) -> None:
        cfg = core.config
        if self.forecaster_name in (None, cfg.forecaster) and not self.forecast_settings:
            self._forecaster = core.forecaster
        elif self.forecaster_name == "file" and cfg.forecaster != "file":
            raise ConfigError("mpc_file plans on forecast_csv: set env.forecaster=file and env.forecast_csv")
        else:
            own = cfg.replace(forecaster=self.forecaster_name,
                              forecast_csv=cfg.forecast_csv if self.forecaster_name == "file" else None,
                              **self.forecast_settings)
            self._forecaster = build_forecaster(own, core.profiles)
        if self._bar is not None:
            self._bar.close()
        self._bar = Progress(core.steps_per_episode * core.batch_size, f"MPC ({self._forecaster.name})", "LPs",
                             enabled=self.progress)

    def plans(self, core: CommunityCore, fixed_first_kw: np.ndarray | None = None) -> list[OptimalSchedule]:
        """Each community's plan from its state now (step ``core.t``) to the episode's end. ``fixed_first_kw``
        (B, 3, N): each community's charge, discharge and curtailed PV (kW) of this step, fixed (the plan around
        another controller's step, ``DispatchProblem.fixed_first_kw``)."""
        if self._forecaster is None:
            raise RuntimeError("MPCPolicy acts or plans before reset(core)")
        t, end = core.t, core.steps_per_episode
        known = self._forecaster.known_day(core.days, t)[:, t:end]  # (B, T - t, 2, N)

        def plan(b: int):
            problem = DispatchProblem(int(core.days[b]), t, known[b, :, 0], known[b, :, 1], core.energy_kwh[b],
                                      core.start_energy_kwh[b], float(core.shared_energy_kwh[b, 0]),
                                      float(core.shared_start_energy_kwh[b, 0]),
                                      None if fixed_first_kw is None else fixed_first_kw[b])
            # Step t's load and PV in the plan are metered, the truth, so its first step acts out exactly.
            return solve_dispatch(core, problem, self.network, separate_meters=self.household,
                                  power_smoothing_per_kwh=self.power_smoothing_per_kwh)

        if self.threads > 1 and self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads)
        communities = range(core.batch_size)
        return list(map(plan, communities) if self._pool is None else self._pool.map(plan, communities))

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        t = core.t
        actions = np.zeros((core.batch_size, core.n_agents, ACTION_DIM))
        self._operator_action = np.zeros((core.batch_size, 2))
        schedules = self.plans(core)
        self.planned_cost = np.array([schedule.cost for schedule in schedules])
        for b, schedule in enumerate(schedules):
            actions[b] = schedule.actions(core.battery.max_kw)[0]
            if core.has_shared_battery and not self.household:
                self._operator_action[b] = schedule.operator_actions(core.config.shared_battery_kw)[0]
            if self._bar is not None:
                self._bar.update(t * core.batch_size + b + 1)
        if t == core.steps_per_episode - 1:
            self.close()
        self._planned_step = t
        return actions

    def close(self) -> None:
        """Release the threads and the progress bar (``act`` does at the episode's last step): none are held
        between episodes."""
        if self._bar is not None:
            self._bar.close()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def act_operator(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray | None:
        """The shared battery's first step of the plans ``act`` made for this step (B, 2); None for the household
        MPC, which leaves it to its own control rule."""
        if self._planned_step != core.t:
            raise RuntimeError("MPCPolicy.act_operator plays the plan of act(core, obs) of the same step; call act "
                               "first")
        return None if self.household else self._operator_action
