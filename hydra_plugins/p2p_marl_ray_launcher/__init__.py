"""A Hydra launcher that runs each job of a sweep as a Ray task (preset: configs/hydra/launcher/ray.yaml).

It lives in the ``hydra_plugins`` namespace because Hydra only instantiates launchers found there.
"""
