"""How precise a controller must be: MPC with its battery setpoints moved by noise or a bias, and where trained
policies sit on that scale.

    python -m p2p_marl.evaluation.setpoint_precision [RUN_DIR ...] [--days test] [--max-days N] [--threads T]
        [--out DIR]

MPC on the environment's persistence forecasts (``p2p_marl.baselines.mpc``) plans as usual, and each step every
household's battery setpoint share (the action's first entry, a share of the battery's rated power in [-1, 1]) is
moved before the step applies it: by independent seeded Gaussian noise of each root mean square in ``NOISE_RMS``,
or by each constant ``BIAS``, then clipped to [-1, 1] (the step then keeps the power within the battery's charge
limits, as for any action). MPC plans again from the state that reaches, so it makes up for what it can. The rows
say how steep the yardstick is: how much of the optimal saving an error of a given size in the setpoint costs a
controller that otherwise plans as well as MPC. Every noise level scales the same seeded draws (one sample of the
noise, the same for every level, so the curve's steps are the noise's size, not another draw).

Each training run directory given (its best checkpoint on validation days, ``compare.load_policies``), the
rules and the floor (idle batteries at the mid price, random actions) are placed on that scale: the setpoint noise
at which MPC's share falls to theirs (``equivalent_noise_rms``). A learner whose share equals MPC's with noise of
0.03 loses as much as a planner whose every household battery setpoint errs by 3 % of the rated power (root mean
square, independently in every step) would; its own errors are not independent, so this is a measure of size, not
a model of its errors. Runs of one learner and training setting (seeds) form one row.

Writes ``setpoint_precision.md`` (the two tables, also printed) and ``setpoint_precision.png`` (share of the
optimal saving against the setpoint noise, with the other controllers' shares as horizontal lines) to ``--out``
(default: a new directory ``runs/setpoint_precision/<date>_<time>``). Test days by default, beside the
comparison table: it explains reported numbers and chooses nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from p2p_marl.baselines.mpc import MPCPolicy
from p2p_marl.baselines.policy import Policy, PolicyWrapper
from p2p_marl.config import EnvConfig
from p2p_marl.evaluation.compare import evaluate_policy, reference_costs
from p2p_marl.evaluation.day_scripts import day_means, finish_share_plot, method_styles, runs_script_arguments
from p2p_marl.evaluation.report import console, method_of, plt  # report sets matplotlib's file-only backend
from p2p_marl.sim.community import CommunityCore

# Root mean square of the noise and the constant biases added to MPC's setpoint share (a share of the battery's
# rated power): the clones of MPC fit it to 0.09 to 0.18 RMS on the training days' batteries
# (docs/what_was_tried.md), and coming close to MPC asks for errors well below that.
NOISE_RMS = (0.01, 0.02, 0.035, 0.07, 0.14)
BIAS = (-0.02, -0.01, 0.01, 0.02)
OTHER_CONTROLLERS = ("rule_time_of_use", "rule_self_consumption", "idle_mid_price", "random")


class MovedSetpoints(PolicyWrapper):
    """A policy whose households' battery setpoint shares are moved by seeded Gaussian noise of root mean square
    ``noise_rms`` and a constant ``bias`` before the clip to [-1, 1]; bid price, curtailment and a shared
    battery's dispatch are the policy's. Each day's noise is its own stream, from ``seed`` and the day, started
    again at every ``reset``: a day is played with the same noise in any batch of days, and an evaluation
    repeats."""

    def __init__(self, policy, noise_rms: float, bias: float = 0.0, seed: int = 0):
        if not (noise_rms >= 0.0 and np.isfinite(noise_rms) and np.isfinite(bias)):
            raise ValueError(f"noise_rms must be finite and >= 0 and bias finite, got {noise_rms} and {bias}")
        super().__init__(policy, f"{policy.name}, setpoint noise {noise_rms:g}, bias {bias:+g}")
        self.noise_rms, self.bias, self.seed = noise_rms, bias, seed
        self._day_streams: list[np.random.Generator] = []

    def reset(self, core: CommunityCore) -> None:
        self._day_streams = [np.random.default_rng([self.seed, int(day)]) for day in core.days]
        super().reset(core)

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        action = np.array(self.policy.act(core, obs), dtype=np.float64)
        noise = self.noise_rms * np.stack([stream.standard_normal(action.shape[1]) for stream in self._day_streams])
        action[..., 0] = np.clip(action[..., 0] + self.bias + noise, -1.0, 1.0)
        return action


def equivalent_noise_rms(share: float, curve: list[tuple[float, float]]) -> float | None:
    """The setpoint noise at which MPC's share of the optimal saving falls to ``share``: ``curve`` is (noise
    RMS, MPC's share) in ascending noise from 0; linear between the first two points whose shares bracket
    ``share``. 0 for a share at or above the noiseless MPC's, None below every point's (off the scale), NaN for
    a NaN share (no day with a saving to share)."""
    if np.isnan(share):
        return float("nan")
    if share >= curve[0][1]:
        return 0.0
    for (noise_low, share_low), (noise_high, share_high) in zip(curve, curve[1:]):
        if share_high <= share:  # share_low > share here, else the previous point would have answered
            return noise_low + (noise_high - noise_low) * (share_low - share) / (share_low - share_high)
    return None


def setpoint_precision(config: EnvConfig, days: np.ndarray, others: dict[str, Policy],
                       threads: int = 1) -> tuple[list[dict], list[dict]]:
    """MPC's rows (noise RMS, bias, share of the optimal saving, cost per day, days with violations; means over
    ``days``), and a row per method of ``others`` (labelled as ``compare.load_policies`` labels them: method,
    runs, each run's share, their mean, the equivalent noise of the mean and of each run)."""
    references = reference_costs(config, days, progress=True)

    def moved_mpc(noise_rms: float, bias: float) -> dict:
        policy = MovedSetpoints(MPCPolicy(progress=True, threads=threads), noise_rms, bias)
        return {"noise_rms": noise_rms, "bias": bias, **day_means(evaluate_policy(config, policy, days, references))}

    mpc_rows = [moved_mpc(noise_rms, 0.0) for noise_rms in (0.0, *NOISE_RMS)]
    mpc_rows += [moved_mpc(0.0, bias) for bias in BIAS]
    curve = [(row["noise_rms"], row["share"]) for row in mpc_rows if row["bias"] == 0.0]
    shares: dict[str, list[float]] = {}
    for label, policy in others.items():
        shares.setdefault(method_of(label), []).append(day_means(evaluate_policy(config, policy, days,
                                                                                 references))["share"])
    other_rows = [{"method": method, "runs": len(run_shares), "shares": run_shares,
                   "share": float(np.mean(run_shares)),
                   "equivalent_noise": equivalent_noise_rms(float(np.mean(run_shares)), curve),
                   "run_equivalent_noise": [equivalent_noise_rms(share, curve) for share in run_shares]}
                  for method, run_shares in shares.items()]
    return mpc_rows, other_rows


def _noise_cell(noise_rms: float | None, off_scale: float) -> str:
    if noise_rms is None:
        return f"> {off_scale:g}"
    return "n/a" if np.isnan(noise_rms) else f"{noise_rms:.3f}"


def markdown(mpc_rows: list[dict], other_rows: list[dict]) -> str:
    lines = ["| MPC's setpoint share moved by: noise (RMS) | bias | share of optimal saving | cost /day | "
             "days with violations |", "|---|---|---|---|---|"]
    for row in mpc_rows:
        bias = f"{row['bias']:+g}" if row["bias"] else "0"
        lines.append(f"| {row['noise_rms']:g} | {bias} | {row['share']:.3f} | {row['cost']:.2f} | "
                     f"{row['violation_days']:.0%} |")
    largest = max(NOISE_RMS)
    lines += ["", "| method | runs | share of optimal saving (each run) | MPC's setpoint noise of equal share "
              "(each run) |", "|---|---|---|---|"]
    for row in other_rows:
        each_share = " / ".join(f"{share:.3f}" for share in row["shares"])
        each_noise = " / ".join(_noise_cell(noise, largest) for noise in row["run_equivalent_noise"])
        lines.append(f"| {row['method']} | {row['runs']} | {row['share']:.3f}" +
                     (f" ({each_share})" if row["runs"] > 1 else "") +
                     f" | {_noise_cell(row['equivalent_noise'], largest)}" +
                     (f" ({each_noise})" if row["runs"] > 1 else "") + " |")
    return "\n".join(lines) + "\n"


def plot(path: Path, mpc_rows: list[dict], other_rows: list[dict], title: str) -> None:
    """MPC's share against the setpoint noise (joined points) and against a constant bias of that size
    (triangles), the other controllers' mean shares as horizontal lines (the rules and the floor grey), each
    learner's marked where it meets MPC's curve."""
    fig, ax = plt.subplots(figsize=(10.5, 5.0), layout="constrained")
    noisy = [row for row in mpc_rows if row["bias"] == 0.0]
    ax.plot([row["noise_rms"] for row in noisy], [row["share"] for row in noisy], "o-", color="tab:red",
            label="MPC (persistence), setpoint share + noise of RMS x")
    for sign, marker in ((1, "^"), (-1, "v")):
        biased = [row for row in mpc_rows if np.sign(row["bias"]) == sign]
        ax.plot([abs(row["bias"]) for row in biased], [row["share"] for row in biased], marker, color="tab:red",
                fillstyle="none", markersize=8, label=f"MPC, setpoint share {'+' if sign > 0 else '−'} bias of x")
    # The floor (random actions) can lie far below zero: the axis spans MPC's curve, zero and the optimum, and
    # the legend gives each line's share.
    shown = [row for row in other_rows if not np.isnan(row["share"])]
    bottom = min(0.0, *(row["share"] for row in mpc_rows)) - 0.1
    top = max(1.0, *(row["share"] for row in shown)) + 0.05
    styles = method_styles([row["method"] for row in shown], OTHER_CONTROLLERS)
    for row in shown:
        benchmark = row["method"] in OTHER_CONTROLLERS
        color, style = styles[row["method"]]
        runs = f", {row['runs']} runs" if row["runs"] > 1 else ""
        below = ", below the axis" if row["share"] < bottom else ""
        ax.axhline(row["share"], color=color, linestyle=style, linewidth=1.2,
                   label=f"{row['method']} ({row['share']:.3f}{runs}{below})")
        if not benchmark and row["equivalent_noise"] is not None and row["equivalent_noise"] > 0:
            ax.plot(row["equivalent_noise"], row["share"], "D", color=color, markersize=6)
    ax.set_ylim(bottom, top)
    finish_share_plot(fig, ax, path, "setpoint error: noise RMS or bias, share of the battery's rated power (x)",
                      title, "center left", outside=True)


def main(argv: list[str] | None = None) -> None:
    args, config, days, others, out = runs_script_arguments("setpoint_precision", __doc__.splitlines()[0],
                                                            OTHER_CONTROLLERS, argv)
    mpc_rows, other_rows = setpoint_precision(config, days, others, args.threads)
    table = markdown(mpc_rows, other_rows)
    (out / "setpoint_precision.md").write_text(table)
    title = f"How precise a controller must be: {len(days)} {args.days} days, {config.n_agents} households"
    plot(out / "setpoint_precision.png", mpc_rows, other_rows, title)
    console().print(title + "\n" + table)
    console().print(f"Written to {out}")


if __name__ == "__main__":
    main()
