"""A trained Random Forest as plain arrays (never pickled), predicted by scikit-learn's compiled
tree code on several threads.

Tree format (the tensors of a ``randomforest`` model file; nodes of all trees concatenated,
tree by tree, each tree's nodes in scikit-learn's order with its root first):

* ``tree_offsets`` int64 (trees + 1): the nodes of tree t are rows
  ``tree_offsets[t] .. tree_offsets[t + 1] - 1``.
* ``children_left``, ``children_right`` int32 (nodes): the child node, numbered within its
  tree; -1 at a leaf (scikit-learn's ``tree_.children_left / children_right``).
* ``feature`` int32 (nodes): the feature a node tests; -2 at a leaf.
* ``threshold`` float64 (nodes): a sample goes left when ``feature value <= threshold``
  (the feature value taken as float32, as scikit-learn does); -2 at a leaf.
* ``leaf_value`` float64 (leaves, classes): the class distribution (fractions summing to 1)
  of each leaf's training samples, leaves in node order; column i is class index i of the
  model's class table (classes absent from the training sample get 0).
* ``fill_values`` float32 (features): the value that replaces a missing feature value.

Prediction: each tree is rebuilt as a scikit-learn ``Tree`` from the validated arrays, its node
records (``NODE_DTYPE``) filled field by field, as unpickling would fill them but from arrays
of ours: nothing of the file is unpickled or run, and every link is checked before. A missing
value (NaN) goes right, as ``NaN <= threshold`` is false. The forest's probabilities are the
mean over the trees of the leaves' class distributions, as in scikit-learn. The samples are cut
into blocks that the threads take in turn (`sample_blocks`: a multiple of the threads, each
of about `BLOCK_BYTES` of features), each block going through the trees in order, so the
result does not depend on the number of threads or the blocks.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

#: The features of the samples a block holds. Every tree reads the whole block, so a block that
#: stays in the cache between trees is read from memory once; a smaller one makes every tree's
#: nodes be fetched again more often. Measured on 2 cores (100 trees): 144 features fastest at
#: 4.7 MB (8,192 samples; 9.4 MB: 0.45 against 0.62 Mpx/s), 1,008 features at 4 to 8 MB
#: (1,024 to 2,048 samples; 66 MB: 0.14 against 0.27 Mpx/s).
BLOCK_BYTES = 4 << 20
#: The fewest samples in a block (scikit-learn's cost per call, and fetching a tree's nodes
#: again for each block, are then a few % at most).
BLOCK_ROWS = 1024
TENSORS = ("tree_offsets", "children_left", "children_right", "feature", "threshold",
           "leaf_value", "fill_values")


@dataclass
class Forest:
    """The arrays of the format above, and the trees rebuilt from them to predict."""

    tree_offsets: np.ndarray
    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    leaf_value: np.ndarray
    fill_values: np.ndarray

    def __post_init__(self) -> None:
        self._check_links()
        self.is_leaf = self.children_left < 0
        if self.leaf_value.shape[0] != int(self.is_leaf.sum()):
            raise ValueError(f"{self.leaf_value.shape[0]} leaf distributions for "
                             f"{int(self.is_leaf.sum())} leaves")

    def _check_links(self) -> None:
        """Whole-number node arrays of one length, trees that cover them, and in each tree
        children after their parent and features the forest has: every sample reaches a leaf,
        whatever file the arrays came from."""
        nodes = self.children_left.size
        offsets = self.tree_offsets
        links = (offsets, self.children_left, self.children_right, self.feature)
        if (any(not np.issubdtype(a.dtype, np.integer) or a.ndim != 1 for a in links)
                or {a.size for a in links[1:]} | {self.threshold.size} != {nodes}
                or self.threshold.ndim != 1 or self.leaf_value.ndim != 2
                or self.fill_values.ndim != 1
                or offsets.size < 2 or offsets[0] != 0 or offsets[-1] != nodes
                or np.any(np.diff(offsets) < 1)):
            raise ValueError("the forest's arrays do not fit together")
        sizes = np.diff(offsets)
        local = np.arange(nodes) - np.repeat(offsets[:-1], sizes)
        end = np.repeat(sizes, sizes)
        inner = self.children_left >= 0
        bad = np.zeros(nodes, dtype=bool)
        for child in (self.children_left, self.children_right):
            bad |= inner & ((child <= local) | (child >= end))
        bad |= inner & ((self.feature < 0) | (self.feature >= self.fill_values.size))
        if bad.any():
            raise ValueError(f"node {int(np.flatnonzero(bad)[0])} of the forest links to a "
                             "node that is not after it in its tree, or to a feature it lacks")

    @property
    def n_trees(self) -> int:
        return int(self.tree_offsets.size - 1)

    @property
    def n_features(self) -> int:
        return int(self.fill_values.size)

    @property
    def n_classes(self) -> int:
        return int(self.leaf_value.shape[1])

    @classmethod
    def from_sklearn(cls, estimator: Any, class_indices: np.ndarray, n_classes: int,
                     fill_values: np.ndarray) -> Forest:
        """Export a fitted ``RandomForestClassifier``; `class_indices` maps its ``classes_``
        (in order) to the columns of the model's class table."""
        lefts, rights, features, thresholds, values, offsets = [], [], [], [], [], [0]
        for tree in (e.tree_ for e in estimator.estimators_):
            leaf = tree.children_left < 0
            counts = tree.value[:, 0, :][leaf]
            totals = counts.sum(axis=1, keepdims=True)
            totals[totals == 0] = 1.0
            distribution = np.zeros((counts.shape[0], n_classes), dtype=np.float64)
            distribution[:, class_indices] = counts / totals
            lefts.append(tree.children_left)
            rights.append(tree.children_right)
            features.append(tree.feature)
            thresholds.append(tree.threshold)
            values.append(distribution)
            offsets.append(offsets[-1] + tree.node_count)
        return cls(np.asarray(offsets, dtype=np.int64),
                   np.concatenate(lefts).astype(np.int32),
                   np.concatenate(rights).astype(np.int32),
                   np.concatenate(features).astype(np.int32),
                   np.concatenate(thresholds).astype(np.float64),
                   np.concatenate(values), np.asarray(fill_values, dtype=np.float32))

    def tensors(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(getattr(self, name)) for name in TENSORS}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Any]) -> Forest:
        """From the model file's tensors (numpy arrays, or torch tensors on the CPU)."""
        missing = [name for name in TENSORS if name not in tensors]
        if missing:
            raise KeyError(f"missing tensors {', '.join(missing)}")
        return cls(**{name: np.asarray(tensors[name]) for name in TENSORS})

    def fill_missing(self, x: np.ndarray) -> np.ndarray:
        """`x` (samples, features) as float32 with missing values (NaN) replaced, in place."""
        x = np.asarray(x, dtype=np.float32)
        missing = np.isnan(x)
        if missing.any():
            x[missing] = np.broadcast_to(self.fill_values, x.shape)[missing]
        return x

    @cached_property
    def trees(self) -> list[Any]:
        """scikit-learn's ``Tree`` of each tree, built from the checked arrays: a leaf's links
        set to scikit-learn's -1 (any negative left child marks a leaf here) and its class
        distribution as its value (inner nodes hold zeros, which prediction never reads).
        scikit-learn is imported here: the ONNX classification reads this module without it."""
        from sklearn.tree._tree import NODE_DTYPE, Tree

        leaf_row = np.cumsum(self.is_leaf) - 1
        n_classes = np.array([self.n_classes], dtype=np.intp)
        trees = []
        for start, end, depth in zip(self.tree_offsets[:-1].tolist(),
                                     self.tree_offsets[1:].tolist(), self.depths(), strict=True):
            leaf = self.is_leaf[start:end]
            nodes = np.zeros(end - start, dtype=NODE_DTYPE)
            nodes["left_child"] = np.where(leaf, -1, self.children_left[start:end])
            nodes["right_child"] = np.where(leaf, -1, self.children_right[start:end])
            nodes["feature"] = np.where(leaf, -2, self.feature[start:end])
            nodes["threshold"] = np.where(leaf, -2.0, self.threshold[start:end])
            values = np.zeros((end - start, 1, self.n_classes))
            values[leaf, 0] = self.leaf_value[leaf_row[start:end][leaf]]
            tree = Tree(self.n_features, n_classes, 1)
            # scikit-learn sizes buffers by max_depth (decision_path): it must be the true one.
            tree.__setstate__({"max_depth": depth, "node_count": end - start, "nodes": nodes,
                               "values": values})
            trees.append(tree)
        return trees

    def depths(self) -> list[int]:
        """The depth of each tree (links from its root to its deepest leaf), level by level
        over the checked links (a node two parents share is counted once per level)."""
        offsets = self.tree_offsets
        owner = np.repeat(np.arange(self.n_trees), np.diff(offsets))
        depths = np.zeros(self.n_trees, dtype=np.int64)
        level, frontier = 0, offsets[:-1]
        while (inner := frontier[~self.is_leaf[frontier]]).size:
            level += 1
            depths[owner[inner]] = level
            base = offsets[owner[inner]]
            frontier = np.unique(np.concatenate([base + self.children_left[inner],
                                                 base + self.children_right[inner]]))
        return depths.tolist()

    def predict_proba(self, x: np.ndarray, threads: int = 1) -> np.ndarray:
        """Class probabilities (samples, classes): the mean over the trees of the leaves'
        class distributions, on `threads` threads. `x` (samples, features) should hold no
        missing value (see `fill_missing`)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"the forest takes samples of {self.n_features} features, got an "
                             f"array of shape {x.shape}")
        out = np.zeros((x.shape[0], self.n_classes), dtype=np.float64)
        trees = self.trees

        def add(block: slice) -> None:
            part, rows = out[block], x[block]
            for tree in trees:
                part += tree.predict(rows)

        threads = max(threads, 1)
        blocks = sample_blocks(x.shape[0], self.n_features, threads)
        if threads > 1 and len(blocks) > 1:
            with ThreadPoolExecutor(min(threads, len(blocks))) as pool:
                list(pool.map(add, blocks))
        else:
            for block in blocks:
                add(block)
        out /= self.n_trees
        return out


def block_rows(n_features: int) -> int:
    """The samples of `n_features` features in a block of about `BLOCK_BYTES` (at least
    `BLOCK_ROWS`)."""
    return max(BLOCK_ROWS, BLOCK_BYTES // (4 * max(n_features, 1)))


def sample_blocks(samples: int, n_features: int, threads: int) -> list[slice]:
    """`samples` cut into blocks of equal size (within one sample), as many as the multiple of
    `threads` that comes nearest to blocks of `block_rows`, so that the threads finish
    together, but none much smaller than `BLOCK_ROWS`."""
    if samples == 0:
        return []
    rounds = max(1, round(samples / (block_rows(n_features) * threads)))
    count = min(rounds * threads, -(-samples // BLOCK_ROWS))
    bounds = [samples * index // count for index in range(count + 1)]
    return [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]
