"""``UMTLoss``: UMT's distillation term as a loss module for any training loop.

Du et al.'s loss (see :mod:`umt.methods.umt`) is the fusion loss plus
``sum_m lambda_m * D(phi_m(x_m), phi_hat_m(x_m))``; this module computes the second part for a
model and a loop that are the user's own, as timm's ``FeatureDistillationTask`` does:

- the teachers ``phi_hat_m`` are frozen, always in eval mode and under ``no_grad``; ``.to()``
  moves them, but they are not submodules: they are absent from ``state_dict()`` and
  ``parameters()`` (so from checkpoints, the optimiser and DDP);
- where a teacher's feature size differs from the student's, a learned ``nn.Linear`` maps the
  student's feature to the teacher's size (``project="auto"``, with ``student_dims``); the
  projectors are the module's only parameters, trained with the student and saved.

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
from typing import Any

import torch
from torch import nn

from umt.errors import UMTError
from umt.methods.losses import DISTILL_LOSSES
from umt.methods.umt import distill_term
from umt.yours.hooks import pool


class UMTLoss(nn.Module):
    """``sum_m lambda_m * D(P_m(s_m), t_m(x_m))`` over the teachers' modalities.

    Args:
        teachers: ``{modality: nn.Module}`` mapping the modality's input tensor to features
            ``(B, D_t)`` (maps and token sequences are mean-pooled to vectors).
        weights: ``lambda_m``: one float for every modality, or ``{modality: float}`` naming
            each teacher's modality.
        kind: the distance ``D``: ``mse`` (the paper), ``l1`` or ``cosine``.
        project: ``"auto"``: a learned linear projector ``P_m`` (student size -> teacher size)
            for each modality whose sizes differ, created here from ``student_dims`` (so an
            optimiser built next includes it); ``False``: sizes must match; ``True``: a
            projector for every modality of ``student_dims``.
        student_dims: ``{modality: D_s}``, the student's feature sizes (needed for projectors).
        teacher_dims: ``{modality: D_t}``, the teachers' feature sizes; by default a teacher's
            ``feature_dim``, else the size of its last Linear or convolution.

    ``forward(inputs, student_features)`` takes ``inputs = {modality: tensor}`` (e.g. the batch
    dict) and ``student_features = {modality: (B, D_s)}`` and returns
    ``{"loss": sum, "distill/<modality>": lambda_m * D_m, ...}`` (the terms detached, for
    logging; they add up to ``loss``).

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
    ) -> None:
        super().__init__()
        if not teachers:
            raise UMTError("UMTLoss needs at least one teacher: {modality: nn.Module}")
        if kind not in DISTILL_LOSSES:
            raise UMTError(f"UMTLoss: unknown kind {kind!r}; expected one of {DISTILL_LOSSES}")
        if project not in ("auto", True, False):
            raise UMTError(f"UMTLoss: project={project!r}; expected 'auto', True or False")
        mods = list(teachers)
        # A plain dict, not a ModuleDict: the teachers stay out of state_dict(), parameters(),
        # the optimiser and DDP; _apply below moves them with the module.
        self._teachers: dict[str, nn.Module] = dict(teachers)
        for t in self._teachers.values():
            t.eval().requires_grad_(False)
        self.weights = self._weights(weights, mods)
        self.kind = kind
        self.project = project
        self.student_dims = dict(student_dims or {})
        self.teacher_dims = dict(teacher_dims or {})
        for name, dims in (("student_dims", self.student_dims), ("teacher_dims", teacher_dims)):
            unknown = sorted(set(dims or {}) - set(mods))
            if unknown:
                raise UMTError(f"UMTLoss: {name} names {unknown}; the teachers are {mods}")
        self.projectors = nn.ModuleDict()
        if project is not False:
            for m, d_s in self.student_dims.items():
                d_t = self.teacher_dim(m)
                if d_t is None:
                    raise UMTError(
                        f"UMTLoss: the teacher of {m!r} ({type(self._teachers[m]).__name__}) "
                        "gives no feature size (no feature_dim, no Linear or convolution); pass "
                        f"teacher_dims={{{m!r}: D}} so a projector "
                        f"from the student's {d_s} features can be made if the sizes differ"
                    )
                if project is True or d_s != d_t:
                    self.projectors[m] = nn.Linear(d_s, d_t)

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
    def teachers(self) -> dict[str, nn.Module]:
        """The frozen teachers ``{modality: module}`` (not submodules: see the module doc)."""
        return dict(self._teachers)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self._teachers)

    def teacher_dim(self, modality: str) -> int | None:
        """The teacher's feature size: ``teacher_dims``, else its ``feature_dim``, else the size
        its last layer gives (``out_features`` of a Linear, ``out_channels`` of a convolution,
        which pooling keeps), else None. A wrong guess is caught at the first call."""
        if modality in self.teacher_dims:
            return int(self.teacher_dims[modality])
        t = self._teachers[modality]
        for layer in [t, *reversed(list(t.modules())[1:])]:  # the teacher, then last layer first
            for attr in ("feature_dim", "out_features", "out_channels"):
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
    def teacher_features(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The frozen teachers' pooled features ``{modality: (B, D_t)}`` of ``inputs``."""
        missing = [m for m in self._teachers if m not in inputs]
        if missing:
            raise UMTError(
                f"UMTLoss: the inputs have no modality {missing} (they have "
                f"{sorted(inputs)}); each teacher reads its modality's tensor"
            )
        return {m: pool(t.eval()(inputs[m])) for m, t in self._teachers.items()}

    def forward(
        self,
        inputs: Mapping[str, torch.Tensor],
        student_features: Mapping[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        missing = [m for m in self._teachers if m not in student_features]
        if missing:
            raise UMTError(
                f"UMTLoss: student_features has no modality {missing} (it has "
                f"{sorted(student_features)}); give the student's (B, D) feature of each "
                f"teacher's modality {list(self._teachers)}"
            )
        targets = self.teacher_features(inputs)
        student = {m: self._checked(m, pool(student_features[m]), targets[m]) for m in targets}
        total, per = distill_term(
            {m: [s] for m, s in student.items()},
            {m: [t] for m, t in targets.items()},
            self.weights,
            kind=self.kind,
            projectors=self.projectors,
        )
        out = {"loss": total}
        out.update({f"distill/{m}": (self.weights[m] * d).detach() for m, d in per.items()})
        return out

    def _checked(self, m: str, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The student's feature ``(B, D_s)``, checked against its projector (if any) and the
        teacher's ``(B, D_t)``: a mismatch is an error that names the fix."""
        if m in self.projectors:
            proj = self.projectors[m]
            if s.shape[1] != proj.in_features:  # type: ignore[operator]
                raise UMTError(
                    f"UMTLoss: the student's {m!r} features have size {s.shape[1]} but "
                    f"student_dims[{m!r}] = {proj.in_features}; set it to the real size"
                )
            if proj.out_features != t.shape[1]:
                raise UMTError(
                    f"UMTLoss: the teacher of {m!r} gives features of size {t.shape[1]}, not the "
                    f"{proj.out_features} its projector was made for; pass "
                    f"teacher_dims={{{m!r}: {t.shape[1]}}}"
                )
            return s
        if s.shape[1:] == t.shape[1:]:
            return s
        if self.project is False:
            fix = "use project='auto' with student_dims to learn a projector"
        else:
            fix = (
                f"pass student_dims={{{m!r}: {s.shape[1]}}} to UMTLoss so it creates a learned "
                "projector (and build the optimiser after it, with its parameters)"
            )
        raise UMTError(
            f"UMTLoss: modality {m!r}: the student's features have size {s.shape[1]} but the "
            f"teacher's have {t.shape[1]} (project={self.project!r}); {fix}"
        )
