"""Training methods, one file each. ``METHODS`` lists the ones a study can name."""

from umt.methods.base import Method
from umt.methods.joint import Joint
from umt.methods.ume import Choice, ChoiceConfig, Ensemble, UMEConfig, choose, ume_combine
from umt.methods.umt import UMT, UMTConfig, feature_distance, umt_distill_loss

#: Methods a study's ``methods`` list can name (teachers are always trained).
METHODS = {
    "joint": "naive joint training of the fusion model (cross-entropy on the fused logits)",
    "umt": "Uni-Modal Teacher: joint training + feature distillation from frozen teachers",
    "ume": "Uni-Modal Ensemble: average of the independently trained uni-modal models",
}

__all__ = [
    "METHODS",
    "UMT",
    "Choice",
    "ChoiceConfig",
    "Ensemble",
    "Joint",
    "Method",
    "UMEConfig",
    "UMTConfig",
    "choose",
    "feature_distance",
    "ume_combine",
    "umt_distill_loss",
]
