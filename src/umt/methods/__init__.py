"""Training methods, one file each. ``METHODS`` lists the ones a study can name."""

from umt.methods.base import Method, MethodContext, MethodSpec
from umt.methods.gblend import GBlendConfig, build_gblend
from umt.methods.inforeg import InfoRegConfig, build_inforeg
from umt.methods.joint import Joint
from umt.methods.mla import MLAConfig, build_mla
from umt.methods.mmpareto import MMParetoConfig, build_mmpareto
from umt.methods.ogm_ge import OGMGEConfig, build_ogm_ge
from umt.methods.pmr import PMRConfig, build_pmr
from umt.methods.reconboost import ReconBoostConfig, build_reconboost
from umt.methods.relearn import RelearnConfig, build_relearn
from umt.methods.ume import Choice, ChoiceConfig, Ensemble, UMEConfig, choose, ume_combine
from umt.methods.umt import (
    UMT,
    G2DConfig,
    UMTConfig,
    build_umt,
    feature_distance,
    logit_distill_loss,
    umt_distill_loss,
)

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
    "gblend": MethodSpec(
        "G-Blending (Wang et al. 2020): uni-modal heads + fused head, weighted by their OGR",
        build=build_gblend,
    ),
    "ogm_ge": MethodSpec(
        "OGM-GE (Peng et al. 2022): dominant encoder's gradient scaled down, plus Gaussian noise",
        build=build_ogm_ge,
    ),
    "mmpareto": MethodSpec(
        "MMPareto (Wei & Hu 2024): fused and uni-modal gradients combined per encoder, Pareto",
        build=build_mmpareto,
    ),
    "mla": MethodSpec(
        "MLA (Zhang et al. 2024): alternating uni-modal steps, shared head, entropy-weighted fusion",
        build=build_mla,
    ),
    "pmr": MethodSpec(
        "PMR (Fan et al. 2023): prototypical cross-entropy boosts the modality behind",
        build=build_pmr,
    ),
    "reconboost": MethodSpec(
        "ReconBoost (Hua et al. 2024): alternating boosting of per-modality learners, rectified",
        build=build_reconboost,
    ),
    "g2d": MethodSpec(
        "G2D (Rakib & Bagavathi 2025): UMT + logit distillation + weakest-modality prioritisation",
        build=build_umt,  # UMT with G2D's settings (the study's g2d: section, G2DConfig)
        uses_teachers=True,
    ),
    "inforeg": MethodSpec(
        "InfoReg (Huang et al. 2025): dominant encoder held back in its prime learning window",
        build=build_inforeg,
    ),
    "relearn": MethodSpec(
        "Diagnosing & Re-learning (Wei et al. 2024): encoders softly re-initialised by diagnosis",
        build=build_relearn,
    ),
}

__all__ = [
    "METHODS",
    "UMT",
    "Choice",
    "ChoiceConfig",
    "Ensemble",
    "G2DConfig",
    "GBlendConfig",
    "InfoRegConfig",
    "Joint",
    "MLAConfig",
    "MMParetoConfig",
    "Method",
    "MethodContext",
    "MethodSpec",
    "OGMGEConfig",
    "PMRConfig",
    "ReconBoostConfig",
    "RelearnConfig",
    "UMEConfig",
    "UMTConfig",
    "choose",
    "feature_distance",
    "logit_distill_loss",
    "ume_combine",
    "umt_distill_loss",
]
