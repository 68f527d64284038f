"""Training methods, one file each. ``METHODS`` lists the ones a study can name."""

from umt.methods.base import Method, MethodContext, MethodSpec
from umt.methods.joint import Joint
from umt.methods.ume import Choice, ChoiceConfig, Ensemble, UMEConfig, choose, ume_combine
from umt.methods.umt import UMT, UMTConfig, build_umt, feature_distance, umt_distill_loss

#: Methods a study's ``methods`` list can name (the uni-modal teachers are always trained).
#: A method's settings are the study config's section of the same name (``umt:``, ``ume:``...).
METHODS: dict[str, MethodSpec] = {
    "joint": MethodSpec(
        "naive joint training of the fusion model (cross-entropy on the fused logits)",
        build=lambda ctx: Joint(),
    ),
    "umt": MethodSpec(
        "Uni-Modal Teacher: joint training + feature distillation from frozen teachers",
        build=build_umt,
        uses_teachers=True,
    ),
    "ume": MethodSpec(
        "Uni-Modal Ensemble: average of the independently trained uni-modal models",
        build=None,
        uses_teachers=True,
    ),
}

__all__ = [
    "METHODS",
    "UMT",
    "Choice",
    "ChoiceConfig",
    "Ensemble",
    "Joint",
    "Method",
    "MethodContext",
    "MethodSpec",
    "UMEConfig",
    "UMTConfig",
    "choose",
    "feature_distance",
    "ume_combine",
    "umt_distill_loss",
]
