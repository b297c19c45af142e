"""What a trained network is, beside its weights: :class:`ModelMeta`, saved in ``model.pt`` as a plain dict.

Written by training (:func:`steelflow.inference.save_trained`), read by everything that rebuilds or serves
the network (:func:`steelflow.inference.load_trained`, the registry, the ONNX export, the pyfunc). Older
files hold a dict with fewer keys or older names; :meth:`ModelMeta.from_dict` reads them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from steelflow.config import ModelConfig
from steelflow.errors import DataError


@dataclasses.dataclass(frozen=True)
class ModelMeta:
    """The variant and its build arguments (``model``), how it was trained, and the data it expects."""

    variant: str
    image_size: int  # the side the network resizes its input to
    classes: list[str]  # the logits' order
    data_channels: int  # of the training data: 1 grey, 3 colour (the network itself always takes 3)
    dropout: float = 0.0
    input_norm: str = "none"  # models saved before the input stage existed had none
    input_norm_sigma: float = 0.1
    robust: bool = False  # train.robust.enabled

    @classmethod
    def of(cls, model: ModelConfig, classes: list[str], data_channels: int, robust: bool) -> ModelMeta:
        """The meta of a network built from the ``model`` section and trained on ``classes``."""
        return cls(
            variant=model.variant,
            image_size=model.image_size,
            classes=list(classes),
            data_channels=int(data_channels),
            dropout=model.dropout,
            input_norm=model.input_norm,
            input_norm_sigma=model.input_norm_sigma,
            robust=robust,
        )

    @classmethod
    def from_dict(cls, meta: Mapping[str, Any]) -> ModelMeta:
        """A saved meta dict, of this version or an older one: ``in_chans`` is the old name of
        ``data_channels``; keys a file lacks take their defaults, keys this version does not know are
        ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in meta.items() if k in known}
        if "data_channels" not in values and "in_chans" in meta:
            values["data_channels"] = meta["in_chans"]
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.name not in values
        ]
        if missing:
            raise DataError(f"the model's meta lacks {', '.join(missing)}: not a steelflow model file?")
        values["classes"] = list(values["classes"])
        return cls(**values)

    @classmethod
    def of_any(cls, meta: ModelMeta | Mapping[str, Any]) -> ModelMeta:
        """``meta`` as it is, or read from a dict (:meth:`from_dict`)."""
        return meta if isinstance(meta, ModelMeta) else cls.from_dict(meta)

    def to_dict(self) -> dict[str, Any]:
        """Plain values only, so ``model.pt`` loads with ``torch.load(weights_only=True)``."""
        return dataclasses.asdict(self)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def network_kwargs(self) -> dict[str, Any]:
        """The arguments that rebuild the network: ``create_model(meta.variant, **meta.network_kwargs())``."""
        return {
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "dropout": self.dropout,
            "input_norm": self.input_norm,
            "input_norm_sigma": self.input_norm_sigma,
        }
