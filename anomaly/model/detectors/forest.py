"""A fitted scikit-learn Isolation Forest, compiled for fast exact scoring.

scikit-learn scores a batch by walking each tree in turn from Python, which costs about
5 ms of overhead per call: too slow for one point at a time. Here every tree is laid out
as a complete binary tree of the forest's depth limit (``ceil(log2(max_samples))``,
9 for 512 samples): a leaf higher up is copied into every slot below it, behind +inf
thresholds that always lead left. Scoring is then a fixed number of branch-free steps
per tree, compiled with numba. The result equals ``-IsolationForest.score_samples``
exactly: the same float32 features compared with the same float64 thresholds, and path
lengths summed tree by tree in scikit-learn's order.
"""

from __future__ import annotations

import numba
import numpy as np

MAX_DEPTH = 13  # 8192 samples: 200 trees then take about 25 MB
BLOCK = 1024  # rows scored together


def average_path_length(n: np.ndarray) -> np.ndarray:
    """Return ``c(n)``, the mean path length of an unsuccessful search in a binary tree of n items.

    Liu et al. (2008): ``2 (ln(n - 1) + Euler's gamma) - 2 (n - 1) / n``; 1 for n = 2, 0 for n <= 1.
    """
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


@numba.njit(nogil=True, cache=True)
def _path_lengths(rows, feature, threshold, leaf_value, depth, out):  # pragma: no cover (compiled)
    inner = feature.shape[1]
    node = np.empty(BLOCK, np.int64)
    for start in range(0, rows.shape[0], BLOCK):  # a block of rows stays in cache across trees
        stop = min(start + BLOCK, rows.shape[0])
        for tree in range(feature.shape[0]):
            node[:] = 0
            for _ in range(depth):
                for i in range(start, stop):
                    k = node[i - start]
                    node[i - start] = 2 * k + 1 + (rows[i, feature[tree, k]] > threshold[tree, k])
            for i in range(start, stop):
                out[i] += leaf_value[tree, node[i - start] - inner]


class CompiledForest:
    """Arrays of complete trees: ``feature``/``threshold`` ``(trees, 2^depth - 1)``, ``leaf_value`` ``(trees, 2^depth)``."""

    ARRAYS = ("feature", "threshold", "leaf_value", "depth", "n_features", "denominator")

    def __init__(self, forest=None):
        """Compile a fitted ``sklearn.ensemble.IsolationForest`` (``None``: empty, for :meth:`from_arrays`)."""
        if forest is None:
            return
        trees = forest.estimators_
        depth = max(tree.tree_.max_depth for tree in trees)
        if depth > MAX_DEPTH:
            raise ValueError(f"iforest: trees of depth {depth} are too deep to compile "
                             f"(at most {MAX_DEPTH}); use max_samples <= {2 ** MAX_DEPTH}")
        self.depth = depth
        self.n_features = forest.n_features_in_
        inner, leaves = 2**depth - 1, 2**depth
        self.feature = np.zeros((len(trees), inner), dtype=np.int32)
        self.threshold = np.full((len(trees), inner), np.inf)
        self.leaf_value = np.zeros((len(trees), leaves))
        subsampled = forest._max_features != forest.n_features_in_
        for t, (tree, columns) in enumerate(zip(trees, forest.estimators_features_)):
            self._fill(t, tree.tree_, columns if subsampled else None)
        self.denominator = len(trees) * float(average_path_length([forest._max_samples])[0])

    def _fill(self, t: int, tree, columns: np.ndarray | None) -> None:
        """Copy one fitted tree into slot ``t``; a leaf at depth d fills 2^(depth-d) leaf slots."""
        path_length = average_path_length(tree.n_node_samples)
        stack = [(0, 0, 0)]  # (node in the fitted tree, slot in the complete tree, depth)
        while stack:
            node, slot, d = stack.pop()
            left, right = tree.children_left[node], tree.children_right[node]
            if left == -1:
                span = 2 ** (self.depth - d)
                first = (slot + 1) * span - 2**self.depth  # leftmost leaf slot below this slot
                # as scikit-learn: path length counts the root as 1, hence the "- 1.0"
                self.leaf_value[t, first:first + span] = (d + 1) + path_length[node] - 1.0
                continue
            feature = tree.feature[node]
            self.feature[t, slot] = columns[feature] if columns is not None else feature
            self.threshold[t, slot] = tree.threshold[node]
            stack.append((left, 2 * slot + 1, d + 1))
            stack.append((right, 2 * slot + 2, d + 1))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return the compiled forest as arrays for an ``.npz`` file (streaming loads it without scikit-learn)."""
        return {name: np.asarray(getattr(self, name)) for name in self.ARRAYS}

    @classmethod
    def from_arrays(cls, arrays) -> CompiledForest:
        """Rebuild a compiled forest from :meth:`to_arrays` output."""
        forest = cls()
        forest.feature = np.asarray(arrays["feature"], dtype=np.int32)
        forest.threshold = np.asarray(arrays["threshold"], dtype=np.float64)
        forest.leaf_value = np.asarray(arrays["leaf_value"], dtype=np.float64)
        forest.depth, forest.n_features = int(arrays["depth"]), int(arrays["n_features"])
        forest.denominator = float(arrays["denominator"])
        return forest

    def score(self, features: np.ndarray) -> np.ndarray:
        """Return ``(n,)`` anomaly scores in (0, 1], ``-score_samples`` of the forest (higher = more anomalous)."""
        rows = np.ascontiguousarray(features, dtype=np.float32)  # scikit-learn's trees compare float32
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"iforest: features must have shape (n, {self.n_features}), got {rows.shape}")
        depths = np.zeros(len(rows))
        _path_lengths(rows, self.feature, self.threshold, self.leaf_value, self.depth, depths)
        if self.denominator == 0:  # a single training sample
            return np.full(len(rows), 0.5)
        return 2 ** (-(depths / self.denominator))
