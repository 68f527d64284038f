"""Models: encoders, fusion modules and the fusion model."""

from umt.models.encoders import (
    CNNEncoder,
    EncoderConfig,
    EncoderFactory,
    MLPEncoder,
    build_encoder,
)
from umt.models.fusion import (
    FUSIONS,
    AttentionFusion,
    ConcatFusion,
    FiLMFusion,
    GatedFusion,
    SumFusion,
    build_fusion,
)
from umt.models.multimodal import ModelConfig, MultimodalModel, build_model, mask_batch
from umt.models.segmentation import (
    SegEncoder,
    SegmentationModel,
    SegModelConfig,
    build_seg_model,
)

__all__ = [
    "FUSIONS",
    "AttentionFusion",
    "CNNEncoder",
    "ConcatFusion",
    "EncoderConfig",
    "EncoderFactory",
    "FiLMFusion",
    "GatedFusion",
    "MLPEncoder",
    "ModelConfig",
    "MultimodalModel",
    "SegEncoder",
    "SegModelConfig",
    "SegmentationModel",
    "SumFusion",
    "build_encoder",
    "build_fusion",
    "build_model",
    "build_seg_model",
    "mask_batch",
]
