"""Shape of an EAT encoder (:class:`EATConfig`) and the key names and shapes of its canonical state dict.

Plain data, no PyTorch: checking a checkpoint against these needs no tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from frozenasd.errors import ModelError

HEAD_DIM = 64


@dataclass(frozen=True)
class EATConfig:
    """Shape of an EAT encoder; every field is recoverable from its weights except ``num_heads``."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_dim: int
    max_positions: int
    patch_size: int = 16
    num_mel_bins: int = 128
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ModelError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.num_mel_bins % self.patch_size:
            raise ModelError(f"num_mel_bins {self.num_mel_bins} is not a multiple of patch {self.patch_size}")
        if self.max_positions % self.freq_patches:
            raise ModelError(
                f"position table of {self.max_positions} rows is not a whole number of "
                f"{self.freq_patches}-patch time steps"
            )

    @property
    def freq_patches(self) -> int:
        """Patches along the mel axis (8 for 128 bins)."""
        return self.num_mel_bins // self.patch_size

    @property
    def max_frames(self) -> int:
        """Longest input (frames) the position table covers: 12288 for 6144 rows, 1024 for 512."""
        return self.max_positions // self.freq_patches * self.patch_size

    @property
    def size_name(self) -> str:
        """``base``, ``large`` or ``custom``, by the encoder's dimensions."""
        dims = (self.embed_dim, self.depth, self.num_heads, self.mlp_dim)
        return {(768, 12, 12, 3072): "base", (1024, 24, 16, 4096): "large"}.get(dims, "custom")

    def with_depth(self, depth: int) -> EATConfig:
        """The same encoder keeping only its first ``depth`` blocks."""
        if not 1 <= depth <= self.depth:
            raise ModelError(f"depth must be between 1 and {self.depth}, got {depth}")
        return replace(self, depth=depth)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], num_heads: int | None = None) -> EATConfig:
        """Infer the config from a canonical state dict (values with a ``.shape``; :func:`expected_shapes`).

        ``num_heads`` is not visible in the weights; by default it is ``embed_dim / 64``, the head size of
        every released EAT model.
        """
        try:
            embed_dim, in_chans, patch, patch_w = state["patch_embed.weight"].shape
            rows = state["positions"].shape[1]
            mlp_dim = state["blocks.0.mlp.fc1.weight"].shape[0]
        except (KeyError, ValueError, IndexError) as exc:
            raise ModelError(f"not an EAT encoder state dict: {exc!r}") from exc
        if in_chans != 1 or patch != patch_w:
            raise ModelError(f"patch embedding weight has shape {tuple(state['patch_embed.weight'].shape)}")
        depth = 0
        while f"blocks.{depth}.attn.qkv.weight" in state:
            depth += 1
        if num_heads is None:
            if embed_dim % HEAD_DIM:
                raise ModelError(f"cannot infer heads: embed_dim {embed_dim} is not a multiple of {HEAD_DIM}")
            num_heads = embed_dim // HEAD_DIM
        return cls(
            embed_dim=int(embed_dim),
            depth=depth,
            num_heads=int(num_heads),
            mlp_dim=int(mlp_dim),
            max_positions=int(rows),
            patch_size=int(patch),
        )


def expected_shapes(config: EATConfig) -> dict[str, tuple[int, ...]]:
    """Every key of the canonical state dict with its shape, in module order."""
    d, m, p = config.embed_dim, config.mlp_dim, config.patch_size
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, d),
        "positions": (1, config.max_positions, d),
        "patch_embed.weight": (d, 1, p, p),
        "patch_embed.bias": (d,),
        "pre_norm.weight": (d,),
        "pre_norm.bias": (d,),
    }
    for i in range(config.depth):
        b = f"blocks.{i}."
        shapes.update(
            {
                b + "norm1.weight": (d,),
                b + "norm1.bias": (d,),
                b + "attn.qkv.weight": (3 * d, d),
                b + "attn.qkv.bias": (3 * d,),
                b + "attn.proj.weight": (d, d),
                b + "attn.proj.bias": (d,),
                b + "norm2.weight": (d,),
                b + "norm2.bias": (d,),
                b + "mlp.fc1.weight": (m, d),
                b + "mlp.fc1.bias": (m,),
                b + "mlp.fc2.weight": (d, m),
                b + "mlp.fc2.bias": (d,),
            }
        )
    return shapes
