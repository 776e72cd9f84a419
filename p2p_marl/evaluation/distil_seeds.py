"""One actor distilled from a learner's seeds: can a single actor hold the policy of its seeds together?

    python -m p2p_marl.evaluation.distil_seeds RUN_DIR ... [--days-per-round 128] [--rounds 3] [--epochs 100]
        [--seed 0] [--max-days N] [--out DIR]

The runs (two or more of one actor learner and training setting, e.g. the comparison's five seeds of the taught
MAPPO, each from its best checkpoint) played as one policy, the mean of their points in the action box
(``nets.ActorEnsemble``, ``evaluate.py ensemble=true``), played better than any of them on the test days (README,
"One actor from five seeds"). Is that a policy one actor
of theirs can represent, or only a mean of several? A fresh actor of the runs' own learner and settings (the
first run's, seeded by ``--seed``, its imitation settings replaced) is fitted to the ensemble as the learners'
warm start fits MPC (``imitation.ActorImitation.warm_start`` with the ensemble as its teacher): the ensemble's
own training episodes (``--days-per-round`` training days), then ``--rounds`` DAgger rounds of as many episodes
played by the actor and labelled by the ensemble, each refit ``--epochs`` passes over everything so far. Unlike
MPC's, the ensemble's labels are a function of the observation the actor reads, so its fit error says how close
the actor can come. Every run, the ensemble and the distilled actor are then played on the validation and the
test days of the runs' community (the first ``--max-days`` of each). Writes ``distil_seeds.md`` (also printed) to ``--out`` (default:
a new directory ``runs/distil_seeds/<date>_<time>``). Recurrent actors and target-SoC actions are refused: the
warm start fits single steps, and a reached target is not the ensemble's box point.

A diagnostic, not a learner: the teacher costs all its runs' training. No validation or test day is used to fit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from p2p_marl.algos import build_learner, saved_hyperparameters
from p2p_marl.algos.nets import ActorEnsemble
from p2p_marl.cli import user_errors_as_one_line
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.evaluation.compare import evaluate_policy, load_policies, reference_costs
from p2p_marl.evaluation.report import console
from p2p_marl.run_dirs import script_output_dir
from p2p_marl.sim.community import CommunityCore
from p2p_marl.training.checkpoint import load_checkpoint, resolve_checkpoint

SPLITS = ("validation", "test")


def saved_config(run: str) -> dict:
    """The training configuration of ``run``'s best checkpoint (``TrainConfig`` as a dict: env, algo, seed, ...)."""
    return load_checkpoint(resolve_checkpoint(Path(run), "best")).config


def distilled_learner(saved: dict, ensemble: ActorEnsemble, days_per_round: int, rounds: int, epochs: int,
                      seed: int):
    """A fresh learner of the learner and settings a run ``saved`` (``saved_config``), seeded by ``seed``, whose
    actor is fitted to ``ensemble`` (the module docstring), with the warm start's ``imitation/`` metrics."""
    algo = saved_hyperparameters(saved["algo"])
    if algo.get("actor_recurrent") or algo.get("battery_action") == "target_soc":
        raise ConfigError("distil_seeds fits an actor step by step to the ensemble's box points: the runs have a "
                          "recurrent actor or battery_action='target_soc', which it cannot fit so")
    hyperparameters = {**algo, "imitation_days": days_per_round,
                       "imitation_rounds": rounds, "imitation_epochs": epochs, "imitation_teacher": "mpc",
                       "imitation_coef": 0.0, "imitation_smoothing_per_kwh": 0.0, "imitation_regret_weight": 0.0}
    if "imitation_refresh_steps" in hyperparameters:
        hyperparameters["imitation_refresh_steps"] = 0
    learner = build_learner(EnvConfig(**saved["env"]), hyperparameters, seed)
    return learner, learner.imitate(teacher=ensemble)


def distil_seeds(runs: list[str], days_per_round: int = 128, rounds: int = 3, epochs: int = 100, seed: int = 0,
                 max_days: int | None = None) -> tuple[list[dict], dict[str, float]]:
    """A row per policy (each run, the ensemble, the distilled actor): its label and its mean share of the optimal
    saving, cost per day and share of days with violations on each of ``SPLITS`` of the runs' own community; and
    the fit's metrics."""
    policies = load_policies([], runs, ensemble=True)  # one method: one community (the setting holds the env)
    ensembles = [label for label in policies if "+ensemble:" in label]
    if len(ensembles) != 1 or len(policies[ensembles[0]].members) != len(runs):
        raise ConfigError(f"distil_seeds takes the runs of one actor learner and training setting, got the methods "
                          f"{sorted({label.split(':', 1)[0] for label in policies if '+' not in label})}")
    ensemble = policies[ensembles[0]]
    saved = saved_config(runs[0])  # every run's: one setting
    config = EnvConfig(**saved["env"])
    learner, fit = distilled_learner(saved, ensemble, days_per_round, rounds, epochs, seed)
    distilled = learner.policy()
    distilled.observation_settings = ensemble.observation_settings
    played = {**policies, "distilled": distilled}
    core = CommunityCore(config)
    rows = [{"policy": label} for label in played]
    for split in SPLITS:
        days = core.split_days[split][:max_days]
        references = reference_costs(config, days)
        for row, policy in zip(rows, played.values(), strict=True):
            kpis = evaluate_policy(config, policy, days, references)
            row[split] = {"share": float(kpis["share_of_optimal_saving"].mean()),
                          "cost": float(kpis["community_cost"].mean()),
                          "violation_days": float(kpis["violation_day"].mean())}
    return rows, fit


def markdown_table(rows: list[dict], fit: dict[str, float]) -> str:
    header = ["policy", *[f"{split} days: {column}" for split in SPLITS
                          for column in ("share of optimal saving", "cost /day", "days with violations")]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["policy"]]
        for split in SPLITS:
            kpis = row[split]
            cells += [f"{kpis['share']:.3f}", f"{kpis['cost']:.2f}", f"{kpis['violation_days']:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    errors = ", ".join(f"{key.removeprefix('imitation/loss_')} {fit[key]:.5f}"
                       for key in sorted(fit) if key.startswith("imitation/loss_"))
    lines += ["", f"The distilled actor's fit to the ensemble on its {int(fit['imitation/samples'])} agent-steps "
                  f"of training days (mean squared error in the box): {errors}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One actor distilled from a learner's seeds.")
    parser.add_argument("runs", nargs="+", help="training run directories of one actor learner and setting")
    for name, default in (("--days-per-round", 128), ("--rounds", 3), ("--epochs", 100), ("--seed", 0)):
        parser.add_argument(name, type=int, default=default)
    parser.add_argument("--max-days", type=int, default=None, help="the first N validation and test days")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    for name in ("days_per_round", "epochs", "max_days"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.rounds < 0 or args.seed < 0:
        parser.error(f"--rounds and --seed must be >= 0, got {args.rounds} and {args.seed}")
    with user_errors_as_one_line("distil_seeds"):
        rows, fit = distil_seeds(args.runs, args.days_per_round, args.rounds, args.epochs, args.seed,
                                 args.max_days)
    write_report(rows, fit, script_output_dir(args.out, "distil_seeds"))


def write_report(rows: list[dict], fit: dict[str, float], out: Path) -> None:
    """``distil_seeds.md`` in ``out``, also printed."""
    table = markdown_table(rows, fit)
    (out / "distil_seeds.md").write_text(table)
    console().print(table)
    console().print(f"Written to {out}")


if __name__ == "__main__":
    main()
