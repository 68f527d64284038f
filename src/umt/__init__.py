"""unimodal-teacher: find and fix modality failure in supervised multi-modal learning.

The main entry points::

    import umt
    cfg = umt.load_config(overrides=["seeds=[0]"])
    result = umt.run_study(cfg, "runs")          # teachers, joint, UMT, UME, probes, verdict
    umt.probe(encoder, data, "audio")             # diagnose an encoder trained elsewhere
    umt.run_study(cfg, "runs", data=umt.UserData(train=..., val=..., test=...,
                  modalities=["audio", "visual"], num_classes=10))   # your own Datasets

With your own model, data and loop::

    diag = umt.diagnose(model, train, val, test, encoders={"audio": "aud", "visual": "vis"})
    umt_loss = umt.UMTLoss(diag.teachers, weights=5.0)   # + umt_loss(batch, features)["loss"]

The layers, top down (each imports only those below it): ``cli``, ``search``, ``study``,
``yours`` (your own model and loop), ``report``, ``engine``, ``tasks``, ``methods``, ``probe``,
``models``, ``data``, and ``config`` / ``io`` / ``errors`` (docs/architecture.md).
"""

from umt.data import DataBundle, DataConfig, UserData, load_data
from umt.errors import UMTError
from umt.probe import ProbeConfig, ProbeResult
from umt.search import run_study
from umt.study import StudyConfig, StudyResult, load_config
from umt.study.provenance import version
from umt.tasks import probe
from umt.yours import DiagnoseConfig, Diagnosis, Teacher, UMTLoss, capture_features, diagnose
from umt.yours.lightning import UMTMixin

__version__ = version()

__all__ = [
    "DataBundle",
    "DataConfig",
    "DiagnoseConfig",
    "Diagnosis",
    "ProbeConfig",
    "ProbeResult",
    "StudyConfig",
    "StudyResult",
    "Teacher",
    "UMTError",
    "UMTLoss",
    "UMTMixin",
    "UserData",
    "capture_features",
    "diagnose",
    "load_config",
    "load_data",
    "probe",
    "run_study",
]
