"""UMT in a Hugging Face ``Trainer``: ``UMTTrainer`` is a ``Trainer`` with the distillation added.

Use it where you would use ``transformers.Trainer``, with two more arguments::

    trainer = UMTTrainer(model=model, args=args, train_dataset=train,
                         umt_loss=umt.UMTLoss(diag.teachers, weights=5.0),
                         encoders={"audio": "aud", "visual": "vis"})
    trainer.train()

What it does beyond ``Trainer``: ``compute_loss`` adds ``umt_loss(inputs, features)["loss"]`` to
the model's own loss in training steps (the features taken by forward hooks on the named
encoders during the model's forward; evaluation is left as it is); ``remove_unused_columns`` is
turned off, since the teachers read modality columns the model's ``forward`` may not name (with
it on, Hugging Face drops them: ``KeyError: 'audio'``); ``create_optimizer`` adds the loss's
projectors, if any, to the optimiser (Hugging Face builds it from the model alone); and the
weighted terms are logged as ``distill/<modality>``. The teachers are not the model's
submodules: checkpoints hold the student alone.

Needs ``transformers`` (``pip install "unimodal-teacher[hf]"``); nothing else in ``umt``
imports this module. Checked against transformers 5.25 (``compute_loss(model, inputs,
return_outputs, num_items_in_batch)``, ``create_optimizer(model=None)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

try:
    from transformers import Trainer
except ImportError as e:  # pragma: no cover - the extra is missing
    from umt.errors import UMTError

    raise UMTError('umt.yours.hf needs transformers: pip install "unimodal-teacher[hf]"') from e

from umt.yours.distill import UMTLoss
from umt.yours.hooks import FeatureHooks


class UMTTrainer(Trainer):  # type: ignore[misc]
    """``transformers.Trainer`` plus UMT's distillation (see the module docstring).

    Args:
        umt_loss: the :class:`umt.UMTLoss` (its teachers, weights, projectors).
        encoders: ``{modality: dotted submodule name}`` of the model's encoders.
        layouts: their output layouts where they cannot be read off them.
        *args, **kwargs: ``Trainer``'s.
    """

    def __init__(
        self,
        *args: Any,
        umt_loss: UMTLoss,
        encoders: Mapping[str, str],
        layouts: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.args.remove_unused_columns = False  # the teachers read the modality columns
        self.umt_loss = umt_loss.to(self.args.device)
        model: nn.Module = self.model  # type: ignore[assignment]
        self._umt_hooks = FeatureHooks(model, encoders, layouts=layouts)
        self._umt_sums: dict[str, float] = {}
        self._umt_count = 0

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        if model.training:
            terms = self.umt_loss(inputs, self._umt_hooks.features)
            loss = loss + terms["loss"].to(loss)
            for k, v in terms.items():
                if k != "loss":
                    self._umt_sums[k] = self._umt_sums.get(k, 0.0) + float(v)
            self._umt_count += 1
        else:
            self._umt_hooks.features.discard()
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        opt: torch.optim.Optimizer = super().create_optimizer(model)
        held = {id(p) for g in opt.param_groups for p in g["params"]}
        extra = [p for p in self.umt_loss.parameters() if id(p) not in held]
        if extra:  # the projectors: Hugging Face builds the optimiser from the model alone
            opt.add_param_group({"params": extra, "weight_decay": 0.0})
        return opt

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if self._umt_count and "loss" in logs:  # training logs: the terms' mean since the last
            logs.update({k: v / self._umt_count for k, v in self._umt_sums.items()})
            self._umt_sums, self._umt_count = {}, 0
        super().log(logs, *args, **kwargs)
