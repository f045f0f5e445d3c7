"""The EAT encoder in PyTorch, as used for frozen feature extraction.

Input ``(B, 1, T, 128)`` log-mel fbank (T a multiple of 16), output ``(B, 1 + P, D)`` tokens: the CLS
token first, then ``P = T/16 * 8`` patch tokens in time-major order (index ``t * 8 + f``).

The forward pass is the one of EAT's ``extract_features(mask=False, remove_extra_tokens=False)``:
patch embedding, the stored sin-cos table sliced to the token count (never interpolated), the CLS
token prepended without a position, one LayerNorm over all tokens, then post-norm transformer blocks
and no final norm. :class:`EATConfig` and :func:`expected_shapes` are defined in :mod:`.checkpoint`
(which needs no PyTorch) and re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from frozenasd.backbones.eat_export.checkpoint import EATConfig, expected_shapes
from frozenasd.errors import ModelError

__all__ = ["EATConfig", "EATEncoder", "expected_shapes", "multi_head_attention"]


def multi_head_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, head_dim: int
) -> torch.Tensor:
    """Softmax attention of ``(B, N, D)`` queries, keys and values split into ``num_heads`` heads.

    Scores are divided by sqrt(head_dim) (the same numbers as scaling q first: exactly so for head_dim
    64, the scale being a power of two); the softmax is always in float32. Returns ``(B, N, D)``.
    ``head_dim`` (= D / num_heads) is passed as a number so that a traced graph holds a constant scale.
    """
    b, n, c = q.shape
    q, k, v = (t.reshape(b, n, num_heads, head_dim).transpose(1, 2) for t in (q, k, v))
    attn = (q @ k.transpose(-2, -1)) / float(head_dim**0.5)
    if attn.dtype != torch.float32:
        attn = attn.float().softmax(dim=-1).to(q.dtype)
    else:
        attn = attn.softmax(dim=-1)
    return (attn @ v).transpose(1, 2).reshape(b, n, c)


class Attention(nn.Module):
    """Multi-head self-attention with a packed qkv projection, applied as three projections."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values ``(B, N, D)`` of the tokens ``x``."""
        weights, biases = self.qkv.weight.chunk(3), self.qkv.bias.chunk(3)
        q, k, v = (F.linear(x, w, bias) for w, bias in zip(weights, biases, strict=True))
        return q, k, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(multi_head_attention(*self.project(x), self.num_heads, self.head_dim))


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` with the exact (erf) GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Post-norm transformer block: ``x = norm1(x + attn(x)); x = norm2(x + mlp(x))``."""

    def __init__(self, config: EATConfig) -> None:
        super().__init__()
        d = config.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=config.norm_eps)
        self.attn = Attention(d, config.num_heads)
        self.norm2 = nn.LayerNorm(d, eps=config.norm_eps)
        self.mlp = Mlp(d, config.mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class EATEncoder(nn.Module):
    """EAT encoder: ``(B, 1, T, 128)`` fbank to ``(B, 1 + T/16*8, D)`` tokens (CLS first)."""

    def __init__(self, config: EATConfig) -> None:
        super().__init__()
        self.config = config
        d = config.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.register_buffer("positions", torch.zeros(1, config.max_positions, d))
        self.patch_embed = nn.Conv2d(1, d, kernel_size=config.patch_size, stride=config.patch_size)
        self.pre_norm = nn.LayerNorm(d, eps=config.norm_eps)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], config: EATConfig) -> EATEncoder:
        """Build the encoder in eval mode holding ``state`` (canonical names, as :func:`expected_shapes`)."""
        model = cls(config)
        model.load_state_dict(dict(state), strict=True)
        return model.eval()

    def truncate(self, depth: int | None = None, max_frames: int | None = None) -> EATEncoder:
        """Keep the first ``depth`` blocks and the table rows for ``max_frames`` (in place; returns self)."""
        if depth is not None and depth != self.config.depth:
            self.config = self.config.with_depth(depth)
            self.blocks = self.blocks[:depth]
        if max_frames is not None:
            p = self.config.patch_size
            if max_frames % p or not p <= max_frames <= self.config.max_frames:
                raise ModelError(
                    f"max_frames must be a multiple of {p} between {p} and {self.config.max_frames}, "
                    f"got {max_frames}"
                )
            rows = max_frames // p * self.config.freq_patches
            self.positions = self.positions[:, :rows].clone()
            self.config = replace(self.config, max_positions=rows)
        return self

    def _check_input(self, x: torch.Tensor) -> None:
        cfg = self.config
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[3] != cfg.num_mel_bins:
            raise ModelError(f"EAT input must be (batch, 1, time, {cfg.num_mel_bins}), got {tuple(x.shape)}")
        frames = x.shape[2]
        if frames % cfg.patch_size or frames == 0:
            raise ModelError(
                f"EAT input length must be a positive multiple of {cfg.patch_size}, got {frames}"
            )
        if frames > cfg.max_frames:
            raise ModelError(
                f"input of {frames} frames exceeds the position table "
                f"({cfg.max_positions} rows cover {cfg.max_frames} frames)"
            )

    def forward_layers(self, x: torch.Tensor, layers: Iterable[int] = ()) -> tuple[torch.Tensor, list]:
        """Tokens ``(B, 1+P, D)`` and the outputs of the blocks listed in ``layers`` (0-based)."""
        if not torch.jit.is_tracing():
            self._check_input(x)
        wanted = sorted(set(layers))
        if any(not 0 <= i < len(self.blocks) for i in wanted):
            raise ModelError(f"layers must be block indices in [0, {len(self.blocks)}), got {wanted}")
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = x + self.positions[:, : x.shape[1]]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pre_norm(x)
        picked = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in wanted:
                picked[i] = x
        return x, [picked[i] for i in wanted]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, 1 + P, D)``: ``[:, 0]`` is the CLS token, ``[:, 1:]`` the patch tokens."""
        return self.forward_layers(x)[0]
