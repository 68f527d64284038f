"""Your own multi-modal data on disk: the ``umt-folder`` format, its loader, checker and exporter.

The format
==========

A data set is a folder holding ``meta.json`` and one sub-folder per split::

    my-data/
      meta.json
      train/
        audio.npy      # (N_train, 1, 40, 100) float32, one row per sample
        visual.npy     # (N_train, 3, 64, 64)  float32 (or uint8, float16, ...)
        labels.npy     # (N_train,)            integers in 0..num_classes-1
      val/
        audio.npy  visual.npy  labels.npy
      test/
        audio.npy  visual.npy  labels.npy

``meta.json`` describes the data set::

    {
      "format": "umt-folder",
      "version": 1,
      "name": "my-data",
      "task": "classification",
      "num_classes": 10,
      "class_names": ["zero", "one", ...],
      "description": "spoken and written digits",
      "modalities": {
        "audio":  {"shape": [1, 40, 100], "dtype": "float32"},
        "visual": {"shape": [3, 64, 64],  "dtype": "uint8"}
      }
    }

Keys:

* ``format`` (required): the string ``"umt-folder"``.
* ``version`` (required): the integer ``1``.
* ``name`` (required): the data set's name, shown in reports.
* ``task`` (required): ``"classification"``, or ``"segmentation"`` for per-pixel label maps.
* ``num_classes`` (required): the number of classes K (at least 2). Labels are ``0..K-1``.
* ``modalities`` (required): one entry per modality, any number of them (at least one). The name
  is the batch key and the file name (letters, digits, ``_``, ``-``, ``.``; not ``label`` or
  ``labels``). ``shape`` is the shape of *one* sample (a list of positive integers; ``[1]`` for
  one number per sample). ``dtype`` (optional) is the NumPy type the files hold; any integer or
  floating type is allowed, and samples are converted to ``float32`` batch by batch.
* ``class_names`` (optional): K strings, in label order.
* ``description`` (optional): one line for listings and reports.
* ``label_shape`` (optional, default ``[]``): the shape of one sample's label; ``[]`` means one
  class per sample, ``[H, W]`` a label map (required for ``"segmentation"``).
* ``ignore_index`` (optional, default ``null``): a label value outside ``0..K-1`` that marks
  pixels or samples to ignore (e.g. ``255``).

Each split folder holds ``<modality>.npy`` for every modality in ``meta.json`` and
``labels.npy``, written with :func:`numpy.save`. Every file of a split has the same number of rows
N (row ``i`` of every file is sample ``i``), and no split is empty. Other files are ignored (an
undeclared ``.npy`` file draws a warning from the checker).

Arrays are opened with ``np.load(..., mmap_mode="r")``: nothing is read until a batch needs it,
so a data set larger than memory works.

Loading, checking, exporting
============================

* :func:`load_folder` (``data.name: folder``, ``data.root: PATH``) checks the cheap things
  (``meta.json``, files, shapes, dtypes, sample counts, and class labels' range) and raises one
  :class:`~umt.errors.UMTError` listing every problem.
* :func:`check_folder` (``umt data check PATH``) also scans every value, in chunks, for NaN/inf
  and for labels out of range, and returns every problem it finds as a :class:`Problem`.
* :func:`export_folder` (``umt data export NAME PATH``) writes any :class:`DataBundle` in this
  format, atomically.

The package, by job: ``spec`` (the constants, :class:`Problem`, parsing ``meta.json``),
``check`` (:func:`check_folder`), ``load`` (:func:`load_folder`), ``export``
(:func:`export_folder`).

Example:
    >>> import tempfile
    >>> from umt.data import DataConfig, load_data
    >>> from umt.data.synthetic import SyntheticConfig
    >>> data = load_data(DataConfig("synthetic", synthetic=SyntheticConfig(n_train=20, n_val=4, n_test=4)))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     export_folder(data, f"{tmp}/synth")
    ...     print(format_problems(check_folder(f"{tmp}/synth")))
    ...     loaded = load_folder(DataConfig(name="folder", root=f"{tmp}/synth"))
    ...     print(loaded.modalities, len(loaded.train), loaded.input_shapes == data.input_shapes)
    no problems found
    ('strong', 'weak') 20 True
"""

from umt.data.folder.check import check_folder, format_problems
from umt.data.folder.export import export_folder
from umt.data.folder.load import load_folder
from umt.data.folder.spec import (
    FORMAT,
    LABELS,
    META_FILE,
    TASKS,
    VERSION,
    FolderMeta,
    ModalitySpec,
    PathLike,
    Problem,
    Severity,
)

__all__ = [
    "FORMAT",
    "LABELS",
    "META_FILE",
    "TASKS",
    "VERSION",
    "FolderMeta",
    "ModalitySpec",
    "PathLike",
    "Problem",
    "Severity",
    "check_folder",
    "export_folder",
    "format_problems",
    "load_folder",
]
