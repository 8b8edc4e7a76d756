"""A trained Random Forest as plain arrays, predicted with numpy: no pickle, no scikit-learn.

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

Prediction: all samples descend all trees together, one depth level per step, and the
forest's probabilities are the mean of the leaves' distributions, as in scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

TENSORS = ("tree_offsets", "children_left", "children_right", "feature", "threshold",
           "leaf_value", "fill_values")


@dataclass
class Forest:
    """The arrays of the format above, with the global node links used to predict."""

    tree_offsets: np.ndarray
    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    leaf_value: np.ndarray
    fill_values: np.ndarray

    def __post_init__(self) -> None:
        self._check_links()
        sizes = np.diff(self.tree_offsets)
        owner_offset = np.repeat(self.tree_offsets[:-1], sizes)
        self.is_leaf = self.children_left < 0
        nodes = np.arange(self.is_leaf.size)
        # A leaf points to itself, so a sample that reached it stays there.
        self._left = np.where(self.is_leaf, nodes, self.children_left + owner_offset)
        self._right = np.where(self.is_leaf, nodes, self.children_right + owner_offset)
        self._feature = np.where(self.is_leaf, 0, self.feature).astype(np.int64)
        self._leaf_row = np.cumsum(self.is_leaf) - 1
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

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """The leaf node (global row) each sample reaches in each tree: (trees, samples)."""
        x = np.asarray(x, dtype=np.float32)
        n = x.shape[0]
        node = np.repeat(self.tree_offsets[:-1], n)
        sample = np.tile(np.arange(n), self.n_trees)
        active = np.flatnonzero(~self.is_leaf[node])
        while active.size:
            at = node[active]
            goes_left = x[sample[active], self._feature[at]] <= self.threshold[at]
            node[active] = np.where(goes_left, self._left[at], self._right[at])
            active = active[~self.is_leaf[node[active]]]
        return node.reshape(self.n_trees, n)

    def predict_proba(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Class probabilities (samples, classes): the mean over the trees of the leaves'
        class distributions. `x` must hold no missing value (see `fill_missing`)."""
        x = np.asarray(x, dtype=np.float32)
        out = np.zeros((x.shape[0], self.n_classes), dtype=np.float64)
        for start in range(0, x.shape[0], batch_size):
            part = out[start: start + batch_size]
            for tree_leaves in self.leaves(x[start: start + batch_size]):
                part += self.leaf_value[self._leaf_row[tree_leaves]]
        out /= self.n_trees
        return out
