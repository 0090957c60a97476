"""Ranking metrics of a cost model, per group of rows (one group per task), as in
the TenSet benchmark. ``y_true`` is measured throughput (higher is better, 0 for a
failed candidate), ``y_pred`` the model's scores (higher = predicted faster).
"""

from __future__ import annotations

import numpy as np

from .errors import CostModelError


def _check(y_true, y_pred, groups) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Arrays of equal length, and the row indices of each group (in first-seen order)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    groups = np.asarray(groups)
    if y_true.ndim != 1 or y_pred.shape != y_true.shape or groups.shape != y_true.shape:
        raise CostModelError(f"y_true, y_pred and groups must be 1-D of one length, got shapes "
                             f"{y_true.shape}, {y_pred.shape} and {groups.shape}")
    if not (np.all(np.isfinite(y_true)) and np.all(np.isfinite(y_pred))):
        raise CostModelError("y_true and y_pred must be finite")
    _, first, codes = np.unique(groups.astype(str), return_index=True, return_inverse=True)
    order = np.argsort(first)
    return y_true, y_pred, [np.flatnonzero(codes == code) for code in order]


def ordered_pairs(y_true, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row pairs (first, second) of one group with different true values, and the
    sign of ``y_true[first] - y_true[second]``."""
    y_true, _, members = _check(y_true, y_true, groups)
    firsts, seconds = [], []
    for rows in members:
        first, second = np.triu_indices(rows.size, k=1)
        firsts.append(rows[first])
        seconds.append(rows[second])
    first = np.concatenate(firsts) if firsts else np.zeros(0, dtype=np.int64)
    second = np.concatenate(seconds) if seconds else np.zeros(0, dtype=np.int64)
    sign = np.sign(y_true[first] - y_true[second])
    keep = sign != 0
    return first[keep], second[keep], sign[keep]


def pair_score(pairs: tuple[np.ndarray, np.ndarray, np.ndarray], y_pred: np.ndarray) -> float:
    """Pairwise accuracy of ``y_pred`` on precomputed ``ordered_pairs``."""
    first, second, sign = pairs
    if sign.size == 0:
        return float("nan")
    predicted = np.sign(y_pred[first] - y_pred[second])
    return (float(np.sum(predicted == sign)) + 0.5 * float(np.sum(predicted == 0))) / sign.size


def pairwise_accuracy(y_true, y_pred, groups) -> float:
    """The fraction of same-group pairs with different true values whose predicted
    order is right; a pair the model scores equal counts half. NaN when no group
    has two different true values."""
    _, y_pred, _ = _check(y_true, y_pred, groups)
    return pair_score(ordered_pairs(y_true, groups), y_pred)


def top_k_recall(y_true, y_pred, groups, k: int) -> float:
    """Per group, the share of the predicted top-``k`` rows that belong to the true
    top-``k``, averaged over groups. A group with fewer than ``k`` rows uses its size
    as ``k``. Ties are resolved in the rows' favour: a predicted row counts when its
    true value is at least the ``k``-th best true value."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise CostModelError(f"k must be a positive integer, got {k!r}")
    y_true, y_pred, members = _check(y_true, y_pred, groups)
    recalls = []
    for rows in members:
        k_group = min(int(k), rows.size)
        kth_best = np.sort(y_true[rows])[::-1][k_group - 1]
        predicted = rows[np.argsort(-y_pred[rows], kind="stable")[:k_group]]
        recalls.append(np.sum(y_true[predicted] >= kth_best) / k_group)
    return float(np.mean(recalls)) if recalls else float("nan")


def top1_score(y_true, y_pred, groups) -> float:
    """Per group, the true throughput of the predicted best row divided by the best
    true throughput, averaged over groups (the mean over rows tied for the best
    score). Groups whose best true value is 0 are skipped; NaN when all are."""
    y_true, y_pred, members = _check(y_true, y_pred, groups)
    scores = []
    for rows in members:
        best_true = y_true[rows].max()
        if best_true <= 0:
            continue
        chosen = rows[y_pred[rows] == y_pred[rows].max()]
        scores.append(y_true[chosen].mean() / best_true)
    return float(np.mean(scores)) if scores else float("nan")
