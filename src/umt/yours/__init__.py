"""The way in for people with their own model, data and training loop.

- ``diagnose(model, train, val, test, encoders={...})``: does a fusion model of yours suffer
  modality failure? Trains a uni-modal teacher per modality and compares linear probes
  (``Diagnosis``, ``DiagnoseConfig``).
- ``UMTLoss(teachers, weights=...)``: UMT's distillation term for any loop; ``capture_features``
  reads the student's features from your model's own forward pass by hooks.
- ``umt.yours.lightning.UMTMixin``: the same in a ``LightningModule`` (three lines).

The loss itself is the study's (``umt.methods.umt``): one implementation for all three.
"""

from umt.yours.diagnose import diagnose
from umt.yours.diagnosis import DiagnoseConfig, Diagnosis
from umt.yours.distill import UMTLoss
from umt.yours.hooks import capture_features
from umt.yours.teachers import Teacher

__all__ = ["DiagnoseConfig", "Diagnosis", "Teacher", "UMTLoss", "capture_features", "diagnose"]
