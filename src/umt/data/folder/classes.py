"""Class counts of a classification data folder, beside its label range: ``num_classes`` no
larger than the training split (a head with a row per class: ``num_classes: 1000000000`` asked for
a 256 GB model and the check said "no problems found"), and at least two classes among the
training labels (one class scores 100 % and teaches nothing)."""

from __future__ import annotations

import numpy as np

from umt.data.folder.spec import Problem

LABELS_FILE = "train/labels.npy"


def check_class_counts(num_classes: int | None, train_labels: np.ndarray | None) -> list[Problem]:
    """The problems of a folder's classes, given ``meta.json``'s ``num_classes`` and the training
    split's ``(N,)`` labels (nothing for label maps, or where either is unknown).

    Example:
        >>> [p.message[:42] for p in check_class_counts(10**9, np.array([0, 1, 1]))]
        ['num_classes is 1000000000 in meta.json, mo']
        >>> print(check_class_counts(3, np.zeros(5, dtype=int))[0])
        error: train/labels.npy: every training label is 0: a classifier needs at least two classes in training (it would score 100 % and learn nothing); check the labels
    """
    if num_classes is None or train_labels is None or train_labels.ndim != 1:
        return []
    n = len(train_labels)
    problems = []
    if num_classes > n:
        problems.append(
            Problem(
                "meta.json",
                None,
                f"num_classes is {num_classes} in meta.json, more than the {n} training samples "
                "(most classes would have none to learn from, and the model a row per class); "
                "set it to the number of classes the labels use",
            )
        )
    present = np.unique(np.asarray(train_labels))
    if len(present) == 1:
        problems.append(
            Problem(
                LABELS_FILE,
                None,
                f"every training label is {int(present[0])}: a classifier needs at least two "
                "classes in training (it would score 100 % and learn nothing); check the labels",
            )
        )
    return problems
