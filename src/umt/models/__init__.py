"""Models: encoders, fusion modules and the late-fusion model."""

from umt.models.encoders import CNNEncoder, EncoderConfig, MLPEncoder, build_encoder
from umt.models.fusion import FUSIONS, ConcatFusion, build_fusion
from umt.models.multimodal import ModelConfig, MultimodalModel, build_model, mask_batch

__all__ = [
    "FUSIONS",
    "CNNEncoder",
    "ConcatFusion",
    "EncoderConfig",
    "MLPEncoder",
    "ModelConfig",
    "MultimodalModel",
    "build_encoder",
    "build_fusion",
    "build_model",
    "mask_batch",
]
