"""``UMTLoss``: UMT's distillation term as a loss module for any training loop.

Du et al.'s loss (see :mod:`umt.methods.umt`) is the fusion loss plus
``sum_m lambda_m * D(phi_m(x_m), phi_hat_m(x_m))``; this module computes the second part for a
model and a loop that are the user's own, as timm's ``FeatureDistillationTask`` does:

- the teachers ``phi_hat_m`` (:class:`umt.yours.Teacher`, or modules taken as one) are frozen,
  always in eval mode and under ``no_grad``; ``.to()`` moves them, but they are not submodules:
  they are absent from ``state_dict()`` and ``parameters()`` (so from checkpoints, the optimiser
  and DDP);
- where a teacher's feature width differs from the student's, a learned linear map of the
  student's channels (``nn.Linear``; on maps a 1x1 convolution) maps it to the teacher's width
  (``project="auto"``, with ``student_dims``); the projectors are the module's only parameters,
  in its ``state_dict()``. At the second call it checks that an optimiser stepped them: a
  projector left out of the optimiser would stay a fixed random map;
- ``dense=False`` (the paper's classification setting) averages maps and tokens into vectors;
  ``dense=True`` distils per position: maps ``(B, C, H, W)`` and tokens ``(B, N, C)`` as they are
  (a student map of another size is resized to the teacher's, bilinearly).

A plain loop (``capture_features`` takes the student's features by hooks, the model unchanged)::

    umt_loss = UMTLoss(teachers, weights=5.0).to(device)
    opt = torch.optim.Adam([*model.parameters(), *umt_loss.parameters()])
    with capture_features(model, {"audio": "aud", "visual": "vis"}) as feats:
        for batch in loader:
            logits = model(batch)
            loss = F.cross_entropy(logits, batch["label"]) + umt_loss(batch, feats)["loss"]
            opt.zero_grad(); loss.backward(); opt.step()

Under DDP wrap the student, not the loss: ``model = DDP(model)``; the teachers are not
parameters, so DDP neither broadcasts nor synchronises them. If the loss has projectors (sizes
differ), their gradients must be averaged too: wrap it as well, ``umt_loss = DDP(umt_loss)``
(after ``.to(device)``), and give both modules' parameters to the optimiser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from umt.errors import UMTError
from umt.methods.losses import DISTILL_LOSSES
from umt.methods.umt import distill_term
from umt.yours.hooks import LAYOUTS, Captured, channels_last, default_layout, pool, submodule
from umt.yours.start import from_diagnosis
from umt.yours.teachers import Teacher, as_teachers, describe

if TYPE_CHECKING:
    from umt.yours.diagnosis import Diagnosis


class UMTLoss(nn.Module):
    """``sum_m lambda_m * D(P_m(s_m), t_m(x_m))`` over the teachers' modalities.

    Args:
        teachers: ``{modality: nn.Module}`` mapping the modality's input tensor to features;
            a :class:`umt.yours.Teacher` says which layer of a full model to read.
        weights: ``lambda_m``: one float for every modality, or ``{modality: float}`` naming
            each teacher's modality.
        kind: the distance ``D``: ``mse`` (the paper), ``l1`` or ``cosine``.
        project: ``"auto"``: a learned projector ``P_m`` (student width -> teacher width) for
            each modality whose widths differ, created here from ``student_dims`` (so an
            optimiser built next includes it); ``False``: widths must match; ``True``: a
            projector for every modality of ``student_dims``.
        student_dims: ``{modality: C_s}``, the student's feature widths (needed for projectors).
        teacher_dims: ``{modality: C_t}``, the teachers' widths; by default a teacher's
            ``feature_dim``, else the width of its (feature layer's) last layer.
        dense: distil per position (maps, tokens) instead of averaged vectors.
        layouts: ``{modality: "vector" | "tokens" | "channels"}`` of student features passed
            as a plain dict (hooked features carry theirs); by default 3-d is tokens.
        num_classes: where known, a bare teacher giving this many outputs from a final Linear
            is refused as a classifier.

    ``forward(inputs, student_features)`` takes ``inputs = {modality: tensor}`` (e.g. the batch
    dict) and the student's features (the dict :func:`capture_features` yields, or
    ``{modality: tensor}``) and returns ``{"loss": sum, "distill/<modality>": lambda_m * D_m}``
    (the terms detached, for logging; they add up to ``loss``). A hooked encoder that did not run
    in the forward pass of ``inputs`` (modality dropout) has no term in that step.

    Example:
        >>> teacher = nn.Linear(3, 4)
        >>> umt_loss = UMTLoss({"a": teacher}, weights=2.0, student_dims={"a": 8})
        >>> sorted(umt_loss.state_dict())          # the projector 8 -> 4; no teacher weight
        ['projectors.a.bias', 'projectors.a.weight']
        >>> terms = umt_loss({"a": torch.ones(5, 3)}, {"a": torch.zeros(5, 8)})
        >>> sorted(terms), terms["loss"].requires_grad
        (['distill/a', 'loss'], True)
    """

    def __init__(
        self,
        teachers: Mapping[str, nn.Module],
        *,
        weights: float | Mapping[str, float] = 1.0,
        kind: str = "mse",
        project: bool | str = "auto",
        student_dims: Mapping[str, int] | None = None,
        teacher_dims: Mapping[str, int] | None = None,
        dense: bool = False,
        layouts: Mapping[str, str] | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(teachers, Mapping) or not teachers:
            raise UMTError("UMTLoss needs at least one teacher: {modality: nn.Module}")
        if kind not in DISTILL_LOSSES:
            raise UMTError(f"UMTLoss: unknown kind {kind!r}; expected one of {DISTILL_LOSSES}")
        if project not in ("auto", True, False):
            raise UMTError(f"UMTLoss: project={project!r}; expected 'auto', True or False")
        mods = list(teachers)
        # A plain dict, not a ModuleDict: the teachers stay out of state_dict(), parameters(),
        # the optimiser and DDP; _apply below moves them with the module.
        self._teachers: dict[str, Teacher] = as_teachers(teachers, num_classes=num_classes)
        for t in self._teachers.values():
            t.eval().requires_grad_(False)
        self.weights = self._weights(weights, mods)
        self.kind = kind
        self.project = project
        self.dense = dense
        self.student_dims = dict(student_dims or {})
        self.teacher_dims = dict(teacher_dims or {})
        self.layouts = dict(layouts or {})
        for name, given in (("student_dims", student_dims), ("teacher_dims", teacher_dims), ("layouts", layouts)):  # fmt: skip
            unknown = sorted(set(given or {}) - set(mods))
            if unknown:
                raise UMTError(f"UMTLoss: {name} names {unknown}; the teachers are {mods}")
        bad = {m: v for m, v in self.layouts.items() if v not in LAYOUTS}
        if bad:
            raise UMTError(f"UMTLoss: layouts {bad}; expected one of {LAYOUTS}")
        self.projectors = nn.ModuleDict()
        if project is not False:
            for m, d_s in self.student_dims.items():
                d_t = self.teacher_dim(m)
                if d_t is None:
                    raise UMTError(
                        f"UMTLoss: the teacher of {m!r} ({type(self._teachers[m].module).__name__}"
                        ") gives no feature size (no feature_dim, no Linear or convolution); pass "
                        f"teacher_dims={{{m!r}: D}} so a projector "
                        f"from the student's {d_s} features can be made if the sizes differ"
                    )
                if project is True or d_s != d_t:
                    self.projectors[m] = nn.Linear(d_s, d_t)  # on channels last: a 1x1 conv
        self._stepped: dict[str, bool] | None = None  # the optimiser check (see _check_optimiser)
        self._step_hook: Any = None

    @classmethod
    def from_diagnosis(
        cls,
        diag: Diagnosis,
        student: nn.Module,
        encoders: Mapping[str, str],
        **options: Any,
    ) -> UMTLoss:
        """The study's defaults in your loop (``umt.yours.start``): distil only the modalities
        ``diag`` found failing, their encoders of ``student`` started from their teachers."""
        return from_diagnosis(cls, diag, student, encoders, **options)

    @staticmethod
    def _weights(weights: float | Mapping[str, float], mods: list[str]) -> dict[str, float]:
        if not isinstance(weights, Mapping):
            return {m: float(weights) for m in mods}
        unknown = sorted(set(weights) - set(mods))
        missing = [m for m in mods if m not in weights]
        if unknown or missing:
            raise UMTError(
                f"UMTLoss: weights {dict(weights)} must name each teacher's modality {mods} "
                f"(unknown: {unknown}, missing: {missing}); or pass one float for all"
            )
        return {m: float(weights[m]) for m in mods}

    @property
    def teachers(self) -> dict[str, Teacher]:
        """The frozen teachers ``{modality: Teacher}`` (not submodules: see the module doc)."""
        return dict(self._teachers)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self._teachers)

    def teacher_record(self) -> dict[str, dict[str, Any]]:
        """Each teacher's class, SHA-256 fingerprint, source and layer (for checkpoints)."""
        return describe(self._teachers)

    def teacher_dim(self, modality: str) -> int | None:
        """The teacher's feature width: ``teacher_dims``, else its ``feature_dim``, else the
        width its (feature layer's) last layer gives, else None. A wrong guess is caught at
        the first call."""
        if modality in self.teacher_dims:
            return int(self.teacher_dims[modality])
        t = self._teachers[modality]
        if t.feature_dim is not None:
            return t.feature_dim
        inner = submodule(t.module, t.layer) if t.layer else t.module
        for layer in [inner, *reversed(list(inner.modules())[1:])]:  # last layer first
            for attr in ("feature_dim", "out_features", "out_channels", "num_features"):
                dim = getattr(layer, attr, None)
                if isinstance(dim, int):
                    return dim
        return None

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> UMTLoss:
        # .to(), .cuda(), .half() ... reach the teachers although they are not submodules.
        super()._apply(fn, recurse)
        for t in self._teachers.values():
            t._apply(fn)
        return self

    @torch.no_grad()
    def teacher_features(
        self, inputs: Mapping[str, torch.Tensor], modalities: list[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """The frozen teachers' features ``{modality: tensor}`` of ``inputs`` (as they give
        them; ``self.teachers[m].layout`` says how to read them), of every modality or of
        ``modalities``."""
        mods = list(self._teachers) if modalities is None else modalities
        missing = [m for m in mods if m not in inputs]
        if missing:
            raise UMTError(
                f"UMTLoss: the inputs have no modality {missing} (they have "
                f"{sorted(map(str, inputs))}); each teacher reads its modality's tensor"
            )
        return {m: self._teachers[m].eval()(inputs[m]) for m in mods}

    def forward(
        self, inputs: Mapping[str, torch.Tensor], student_features: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        if not isinstance(inputs, Mapping):
            raise UMTError(
                f"UMTLoss: inputs is a {type(inputs).__name__}; expected a dict "
                f"{{modality: tensor}} naming the teachers' modalities {list(self._teachers)}"
                " (for a tuple batch: {'audio': batch[0], ...})"
            )
        self._check_optimiser()
        layouts = dict(self.layouts)
        if isinstance(student_features, Captured):
            layouts.update(student_features.layouts)
            never = [m for m in self._teachers if student_features.calls.get(m, 0) == 0]
            if never:
                raise UMTError(
                    f"UMTLoss: the hooks hold no feature of {never} (their encoders never ran, "
                    f"or are not hooked: {student_features.names}); hook each teacher's modality"
                )
            feats = student_features.select(inputs)
            present = [m for m in self._teachers if m in feats]
            if not present:
                raise UMTError("UMTLoss: none of the hooked encoders ran in this forward pass")
        else:
            feats = dict(student_features)
            missing = [m for m in self._teachers if m not in feats]
            if missing:
                raise UMTError(
                    f"UMTLoss: student_features has no modality {missing} (it has "
                    f"{sorted(map(str, feats))}); give the student's feature of each teacher's "
                    f"modality {list(self._teachers)}"
                )
            present = list(self._teachers)
        targets = self.teacher_features(inputs, present)
        student, teacher = {}, {}
        for m in present:
            s_layout = layouts.get(m) or default_layout(feats[m])
            t_layout = self._teachers[m].layout or default_layout(targets[m])
            student[m], teacher[m] = self._aligned(m, feats[m], s_layout, targets[m], t_layout)
        total, per = distill_term(
            {m: [s] for m, s in student.items()},
            {m: [t] for m, t in teacher.items()},
            {m: self.weights[m] for m in present},
            kind=self.kind,
            projectors=self.projectors,
        )
        out = {"loss": total}
        out.update({f"distill/{m}": (self.weights[m] * d).detach() for m, d in per.items()})
        if torch.is_grad_enabled() and len(self.projectors) and self._stepped is None:
            self._watch_optimiser()
        return out

    def _aligned(
        self, m: str, s: torch.Tensor, s_layout: str, t: torch.Tensor, t_layout: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Student and teacher features, channels last, pooled unless ``dense``; a student map
        resized to the teacher's positions; widths checked against the projector."""
        if not self.dense or "vector" in (s_layout, t_layout):
            s, t = pool(s, s_layout), pool(t, t_layout)
        else:
            if s_layout != t_layout:
                raise UMTError(
                    f"UMTLoss: modality {m!r}: the student's features are {s_layout} "
                    f"{tuple(s.shape)}, the teacher's {t_layout} {tuple(t.shape)}; dense "
                    "distillation needs the same layout (or pass layouts=, or dense=False)"
                )
            if s_layout == "channels" and s.shape[2:] != t.shape[2:]:
                s = F.interpolate(
                    s, size=t.shape[2:], mode="bilinear" if s.ndim == 4 else "nearest"
                )
            if s.shape[:-1] != t.shape[:-1] and s_layout == "tokens":
                raise UMTError(
                    f"UMTLoss: modality {m!r}: the student has {s.shape[1]} tokens, the teacher "
                    f"{t.shape[1]}; dense distillation of tokens needs the same number"
                )
            s, t = channels_last(s, s_layout), channels_last(t, t_layout)
        width_s, width_t = s.shape[-1], t.shape[-1]
        if m in self.projectors:
            proj = self.projectors[m]
            if width_s != proj.in_features:
                raise UMTError(
                    f"UMTLoss: the student's {m!r} features have size {width_s} but "
                    f"student_dims[{m!r}] = {proj.in_features}; set it to the real size"
                )
            if proj.out_features != width_t:
                raise UMTError(
                    f"UMTLoss: the teacher of {m!r} gives features of size {width_t}, not the "
                    f"{proj.out_features} its projector was made for; pass "
                    f"teacher_dims={{{m!r}: {width_t}}}"
                )
            return s, t
        if s.shape[1:] == t.shape[1:]:
            return s, t
        if self.project is False:
            fix = "use project='auto' with student_dims to learn a projector"
        else:
            fix = (
                f"pass student_dims={{{m!r}: {width_s}}} to UMTLoss so it creates a learned "
                "projector (and build the optimiser after it, with its parameters)"
            )
        raise UMTError(
            f"UMTLoss: modality {m!r}: the student's features have size {width_s} but the "
            f"teacher's have {width_t} (shapes {tuple(s.shape)} and {tuple(t.shape)}, "
            f"project={self.project!r}); {fix}"
        )

    # --- the projectors are in an optimiser ------------------------------------------------

    def _watch_optimiser(self) -> None:
        """Note every optimiser step from now on, and whether it held the projectors."""
        ids = {id(p) for p in self.projectors.parameters()}
        stepped = {"any": False, "ours": False}

        def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            stepped["any"] = True
            stepped["ours"] |= any(id(p) in ids for g in opt.param_groups for p in g["params"])

        self._stepped = stepped
        self._step_hook = register_optimizer_step_post_hook(hook)

    def _check_optimiser(self) -> None:
        """After the first optimiser step: the projectors were in an optimiser, or an error."""
        if self._stepped is None or self._step_hook is None or not self._stepped["any"]:
            return
        self._step_hook.remove()
        self._step_hook = None
        if not self._stepped["ours"]:
            raise UMTError(
                f"UMTLoss: an optimiser stepped without the projectors of {list(self.projectors)}"
                " (created because the student's and the teacher's widths differ), so they "
                "would stay a fixed random map; build the optimiser after UMTLoss with both "
                "modules' parameters: Adam([*model.parameters(), *umt_loss.parameters()]) (or "
                "opt.add_param_group({'params': list(umt_loss.parameters())}))"
            )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_step_hook"], state["_stepped"] = None, None  # a hook handle does not pickle
        return state
