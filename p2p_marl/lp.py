"""A sparse linear program assembled block by block from numpy index arrays, handed to HiGHS column-wise: the
optimum's day LP (``p2p_marl.baselines.optimal``) and the feeder safety filter's step LP
(``p2p_marl.sim.safety_filter``)."""

from __future__ import annotations

import functools
import os
import sys
import threading

import highspy
import numpy as np
import scipy.sparse as sp


class LPBuilder:
    """Columns, rows and sparse coefficients of an LP, added block by block as numpy index arrays."""

    def __init__(self) -> None:
        self.n_col = 0
        self.n_row = 0
        self._cols: list[tuple[np.ndarray, ...]] = []  # (cost, lower, upper)
        self._rows: list[tuple[np.ndarray, ...]] = []  # (lower, upper)
        self._entries: list[tuple[np.ndarray, ...]] = []  # (row, col, value)

    def columns(self, shape: tuple[int, ...], cost, lower, upper) -> np.ndarray:
        """Add ``prod(shape)`` columns; cost and bounds broadcast to ``shape``. Returns their indices."""
        index = self.n_col + np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
        self.n_col += index.size
        self._cols.append(tuple(np.broadcast_to(np.asarray(a, dtype=np.float64), shape).ravel()
                                for a in (cost, lower, upper)))
        return index

    def rows(self, shape: tuple[int, ...], lower, upper) -> np.ndarray:
        """Add ``prod(shape)`` rows ``lower <= a x <= upper`` (bounds broadcast to ``shape``). Returns their indices."""
        index = self.n_row + np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
        self.n_row += index.size
        self._rows.append(tuple(np.broadcast_to(np.asarray(a, dtype=np.float64), shape).ravel()
                                for a in (lower, upper)))
        return index

    def entries(self, rows, cols, values) -> None:
        """Set coefficients ``a[rows, cols] = values`` (all three broadcast together)."""
        rows, cols, values = np.broadcast_arrays(rows, cols, np.asarray(values, dtype=np.float64))
        self._entries.append((rows.ravel(), cols.ravel(), values.ravel()))

    def highs_lp(self, integer_columns: np.ndarray | None) -> tuple[highspy.HighsLp, np.ndarray, int]:
        """The model as a column-wise ``HighsLp``, its cost vector and its number of non-zeros."""
        cost, col_lower, col_upper = (np.concatenate(parts) for parts in zip(*self._cols))
        row_lower, row_upper = (np.concatenate(parts) for parts in zip(*self._rows))
        rows, cols, values = (np.concatenate(parts) for parts in zip(*self._entries))
        matrix = sp.csc_matrix((values, (rows, cols)), shape=(self.n_row, self.n_col))
        lp = highspy.HighsLp()  # HiGHS reads +-inf bounds as unbounded (kHighsInf is inf)
        lp.num_col_, lp.num_row_ = self.n_col, self.n_row
        lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, col_lower, col_upper
        lp.row_lower_, lp.row_upper_ = row_lower, row_upper
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = self.n_col, self.n_row
        lp.a_matrix_.start_ = matrix.indptr.astype(np.int32)
        lp.a_matrix_.index_ = matrix.indices.astype(np.int32)
        lp.a_matrix_.value_ = matrix.data
        if integer_columns is not None:
            integrality = np.full(self.n_col, highspy.HighsVarType.kContinuous)
            integrality[integer_columns.ravel()] = highspy.HighsVarType.kInteger
            lp.integrality_ = integrality.tolist()
        return lp, cost, matrix.nnz


def quiet_highs() -> highspy.Highs:
    """A ``Highs`` solver that prints nothing (from any thread)."""
    with _BANNER_LOCK:  # two threads must not point file descriptor 1 away and back at once
        _swallow_highs_banner()
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    return highs


_BANNER_LOCK = threading.Lock()


@functools.cache
def _swallow_highs_banner() -> None:
    """highspy prints a banner ("Running HiGHS 1.16.0 ...: Copyright ...") to the C-level stdout when a process
    creates its first ``Highs`` object, before ``output_flag`` can be set, and never again. That first object
    is created here with file descriptor 1 pointed at /dev/null, so that the banner does not land in the
    middle of progress bars and tables."""
    sys.stdout.flush()
    saved_stdout = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
