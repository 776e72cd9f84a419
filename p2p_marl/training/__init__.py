"""The training kit behind ``train.py``: structured config, training loop, TensorBoard logging, checkpoints.

Modules: ``config`` (Hydra schema and its validation), ``loop`` (the loop, periodic evaluation on validation days,
TensorBoard), ``checkpoint`` (atomic, checksummed checkpoint files that record their environment; resume from the
newest intact one), ``run_lock`` (one training process per run directory), ``event_files`` (a resumed run's
event files without duplicates), ``final_comparison`` (the table a run ends with), ``value_based`` (the episode
loop shared by tabular Q-learning and DQN), ``validation`` (range checks of hyperparameters).
"""
