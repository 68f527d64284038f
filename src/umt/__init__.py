"""unimodal-teacher: find and fix modality failure in supervised multi-modal learning.

The main entry points::

    import umt
    cfg = umt.load_config(overrides=["seeds=[0]"])
    result = umt.run_study(cfg, "runs")          # teachers, joint, UMT, UME, probes, choice
    umt.probe(encoder, data, "audio")             # diagnose an encoder trained elsewhere
    umt.run_study(cfg, "runs", data=umt.UserData(train=..., val=..., test=...,
                  modalities=["audio", "visual"], num_classes=10))   # your own Datasets

With your own model, data and loop::

    diag = umt.diagnose(model, train, val, test, encoders={"audio": "aud", "visual": "vis"})
    umt_loss = umt.UMTLoss(diag.teachers, weights=5.0)   # + umt_loss(batch, features)["loss"]
"""

from umt.data import DataBundle, DataConfig, UserData, load_data
from umt.diagnose import DiagnoseConfig, Diagnosis, diagnose
from umt.distill import UMTLoss
from umt.errors import UMTError
from umt.probe import ProbeConfig, ProbeResult
from umt.study import StudyConfig, StudyResult, load_config, run_study
from umt.tasks import probe

__version__ = "0.1.0"

__all__ = [
    "DataBundle",
    "DataConfig",
    "DiagnoseConfig",
    "Diagnosis",
    "ProbeConfig",
    "ProbeResult",
    "StudyConfig",
    "StudyResult",
    "UMTError",
    "UMTLoss",
    "UserData",
    "diagnose",
    "load_config",
    "load_data",
    "probe",
    "run_study",
]
