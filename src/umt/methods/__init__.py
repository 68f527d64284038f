"""Training methods, one file each. ``METHODS`` lists the ones a study can name."""

from umt.methods.base import ALL_TASKS, Method, MethodContext, MethodSpec
from umt.methods.g2d import G2D, G2DConfig, build_g2d
from umt.methods.gblend import GBlendConfig, build_gblend
from umt.methods.inforeg import InfoRegConfig, build_inforeg
from umt.methods.joint import Joint
from umt.methods.losses import feature_distance, logit_distill_loss, umt_distill_loss
from umt.methods.mla import MLAConfig, build_mla
from umt.methods.mmpareto import MMParetoConfig, build_mmpareto
from umt.methods.ogm_ge import OGMGEConfig, build_ogm_ge
from umt.methods.pmr import PMRConfig, build_pmr
from umt.methods.reconboost import ReconBoostConfig, build_reconboost
from umt.methods.relearn import RelearnConfig, build_relearn
from umt.methods.ume import Choice, ChoiceConfig, Ensemble, UMEConfig, choose, ume_combine
from umt.methods.umt import UMT, UMTConfig, build_umt, distill_term

#: Every method a study's ``methods`` list can name (the uni-modal teachers are always trained),
#: each registered here once: its display name, settings dataclass (the study config's section of
#: the same name: ``umt:``, ``ume:`` ...), builder, the tasks it supports, its search space and the
#: optimiser its authors' code trains with (every peer: SGD with momentum; their mechanisms
#: scale, project or hold gradients, which Adam's per-coordinate normalisation would reshape).
METHODS: dict[str, MethodSpec] = {
    "joint": MethodSpec(
        "joint (naive fusion)",
        "naive joint training of the fusion model (cross-entropy on the fused logits)",
        build=lambda ctx: Joint(),
        tasks=ALL_TASKS,
        search_space={"train.lr": (3e-4, 1e-3, 3e-3)},
    ),
    "umt": MethodSpec(
        "UMT",
        "Uni-Modal Teacher: joint training + feature distillation from frozen teachers",
        build=build_umt,
        config=UMTConfig,
        uses_teachers=True,
        tasks=ALL_TASKS,
        search_space={"weight": (1.0, 5.0, 20.0)},
    ),
    "gblend": MethodSpec(
        "G-Blending",
        "G-Blending (Wang et al. 2020): uni-modal heads + fused head, weighted by their OGR",
        build=build_gblend,
        config=GBlendConfig,
        search_space={"every": (2, 5, 10)},
        optimizer="sgd",
    ),
    "ogm_ge": MethodSpec(
        "OGM-GE",
        "OGM-GE (Peng et al. 2022): dominant encoder's gradient scaled down, plus Gaussian noise",
        build=build_ogm_ge,
        config=OGMGEConfig,
        search_space={"alpha": (0.3, 0.8, 1.5)},
        optimizer="sgd",
    ),
    "mmpareto": MethodSpec(
        "MMPareto",
        "MMPareto (Wei & Hu 2024): fused and uni-modal gradients combined per encoder, Pareto",
        build=build_mmpareto,
        config=MMParetoConfig,
        search_space={"gamma": (1.0, 1.5, 2.5)},
        optimizer="sgd",
    ),
    "mla": MethodSpec(
        "MLA",
        "MLA (Zhang et al. 2024): alternating uni-modal steps, shared head, entropy-weighted fusion",
        build=build_mla,
        config=MLAConfig,
        search_space={"alpha": (0.03, 0.1, 0.3)},
        optimizer="sgd",
    ),
    "pmr": MethodSpec(
        "PMR",
        "PMR (Fan et al. 2023): prototypical cross-entropy boosts the modality behind",
        build=build_pmr,
        config=PMRConfig,
        search_space={"alpha": (0.5, 1.0, 2.0)},
        optimizer="sgd",
    ),
    "reconboost": MethodSpec(
        "ReconBoost",
        "ReconBoost (Hua et al. 2024): alternating boosting of per-modality learners, rectified",
        build=build_reconboost,
        config=ReconBoostConfig,
        search_space={"reconcile": (0.1, 0.25, 0.5)},
        optimizer="sgd",
    ),
    "g2d": MethodSpec(
        "G2D",
        "G2D (Rakib & Bagavathi 2025): UMT + logit distillation + weakest-modality prioritisation",
        build=build_g2d,
        config=G2DConfig,
        uses_teachers=True,
        search_space={"weight": (1.0, 5.0, 20.0)},
        optimizer="sgd",
    ),
    "inforeg": MethodSpec(
        "InfoReg",
        "InfoReg (Huang et al. 2025): dominant encoder held back in its prime learning window",
        build=build_inforeg,
        config=InfoRegConfig,
        search_space={"strength": (0.1, 0.5, 0.95)},
        optimizer="sgd",
    ),
    "relearn": MethodSpec(
        "Diagnosing & Re-learning",
        "Diagnosing & Re-learning (Wei et al. 2024): encoders softly re-initialised by diagnosis",
        build=build_relearn,
        config=RelearnConfig,
        search_space={"strength": (0.5, 1.0, 3.0)},
        optimizer="sgd",
    ),
    "ume": MethodSpec(
        "UME",
        "Uni-Modal Ensemble: average of the independently trained uni-modal models",
        build=None,
        config=UMEConfig,
        uses_teachers=True,
        tasks=ALL_TASKS,
    ),
}


def stage_display_name(stage: str) -> str:
    """A stage's name in the report: ``teacher-audio`` -> ``uni-modal audio (teacher)``,
    ``ogm_ge`` -> ``OGM-GE``, ``umt-sum`` -> ``UMT [sum]`` (a fusion sweep's stage).

    Example:
        >>> stage_display_name("umt-sum"), stage_display_name("teacher-depth")
        ('UMT [sum]', 'uni-modal depth (teacher)')
    """
    if stage.startswith("teacher-"):
        return f"uni-modal {stage.removeprefix('teacher-')} (teacher)"
    method, _, fusion = stage.partition("-")
    spec = METHODS.get(method)
    return (spec.display if spec is not None else method) + (f" [{fusion}]" if fusion else "")


__all__ = [
    "G2D",
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
    "distill_term",
    "stage_display_name",
    "feature_distance",
    "logit_distill_loss",
    "ume_combine",
    "umt_distill_loss",
]
