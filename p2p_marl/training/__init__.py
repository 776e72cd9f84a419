"""The training kit behind ``train.py``: structured config, training loop, TensorBoard logging, checkpoints.

Modules: ``config`` (Hydra schema and its validation), ``loop`` (the loop, periodic evaluation on validation days,
TensorBoard), ``checkpoint`` (atomic checkpoint files, resume), ``value_based`` (the episode loop shared by
tabular Q-learning and DQN), ``validation`` (range checks of hyperparameters).
"""
