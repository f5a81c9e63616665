"""Plain ViT with a simple feature pyramid, ViTDet style (Li et al. 2022, "Exploring Plain Vision Transformer
Backbones for Object Detection"; reference §1.5).

Tokens stay in a (B, H, W, C) grid. Each block uses either windowed attention (window 14, zero-padded grid) or global
attention, both with decomposed relative position biases (MViTv2, Li et al. 2022, Eq. 4): the bias between query
(i_h, i_w) and key (j_h, j_w) is q·R_h[i_h − j_h] + q·R_w[i_w − j_w]. The tables are sized for a window (2·14 − 1 = 27
rows) or for the `img_size` the checkpoint was built for (1024 px / 16 = 64 tokens → 127 rows) and are linearly
resized when the token grid differs. The absolute position embedding of the 224-px pretraining grid (14 × 14, plus
a class token that is dropped) is bicubically resized to the token grid. Simple pyramid: ConvTranspose 2× (stride 8),
identity (stride 16), max-pool 2× (stride 32). Module names follow the official checkpoint keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from uninext_core.model.backbone_convnext import linear_drop_path_rates

LAYER_NORM_EPS = 1e-6


def resize_rel_pos_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """Linearly resize a relative-position table along its first axis.

    Args:
        table: (L_in, head_dim) learned table, row r holds offset r − (L_in − 1) // 2.
        length: wanted number of rows, 2·n − 1 for a grid axis of n tokens.

    Returns:
        (length, head_dim); `table` itself when the lengths already agree.
    """
    if table.shape[0] == length:
        return table
    resized = F.interpolate(table.t().unsqueeze(0), size=length, mode="linear")  # (1, head_dim, length)
    return resized.squeeze(0).t()


def decomposed_rel_pos_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor) -> torch.Tensor:
    """Relative position bias of MViTv2 / ViTDet for self-attention on an H × W token grid.

    Args:
        q: (N, H, W, head_dim) unscaled queries (N = batch × heads).
        rel_pos_h: (L_h, head_dim) table over row offsets; resized to 2H − 1 rows if needed.
        rel_pos_w: (L_w, head_dim) table over column offsets; resized to 2W − 1 rows if needed.

    Returns:
        (N, H·W, H·W) additive attention bias, query index i_h·W + i_w, key index j_h·W + j_w.
    """
    n, h, w, _ = q.shape
    table_h = resize_rel_pos_table(rel_pos_h, 2 * h - 1)
    table_w = resize_rel_pos_table(rel_pos_w, 2 * w - 1)
    rows = torch.arange(h, device=q.device)
    cols = torch.arange(w, device=q.device)
    r_h = table_h[rows[:, None] - rows[None, :] + (h - 1)]  # (H_q, H_k, head_dim)
    r_w = table_w[cols[:, None] - cols[None, :] + (w - 1)]  # (W_q, W_k, head_dim)
    bias_h = torch.einsum("nhwc,hkc->nhwk", q, r_h)  # (N, H_q, W_q, H_k)
    bias_w = torch.einsum("nhwc,wkc->nhwk", q, r_w)  # (N, H_q, W_q, W_k)
    bias = bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]  # (N, H_q, W_q, H_k, W_k)
    return bias.reshape(n, h * w, h * w)


class RelPosAttention(nn.Module):
    """Multi-head self-attention over a (B, H, W, C) token grid with decomposed relative position biases.

    Args:
        dim: token width C.
        num_heads: heads; C must be divisible by it.
        rel_pos_size: grid side the tables are sized for (2·size − 1 rows each).
    """

    def __init__(self, *, dim: int, num_heads: int, rel_pos_size: int) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # ViTDet initialises the relative position tables to zero.
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_pos_size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_pos_size - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        b, h, w, c = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, H·W, head_dim)
        bias = decomposed_rel_pos_bias(q.reshape(b * self.num_heads, h, w, -1), self.rel_pos_h, self.rel_pos_w)
        bias = bias.reshape(b, self.num_heads, h * w, h * w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # softmax(q·k/√d + bias) v
        out = out.transpose(1, 2).reshape(b, h, w, c)
        return self.proj(out)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B·n_h·n_w, window, window, C), zero-padding H and W up to multiples of `window`."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    n_h, n_w = (h + pad_h) // window, (w + pad_w) // window
    x = x.reshape(b, n_h, window, n_w, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b * n_h * n_w, window, window, c)


def window_unpartition(windows: torch.Tensor, *, batch: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `window_partition`: (B·n_h·n_w, window, window, C) -> (B, height, width, C), padding removed."""
    window, c = windows.shape[1], windows.shape[-1]
    n_h, n_w = -(-height // window), -(-width // window)
    x = windows.reshape(batch, n_h, n_w, window, window, c).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(batch, n_h * window, n_w * window, c)
    return x[:, :height, :width, :]


class Mlp(nn.Module):
    """Linear(C, hidden) → GELU → Linear(hidden, C) (timm `Mlp` names: fc1, fc2)."""

    def __init__(self, *, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., C)."""
        return self.fc2(self.act(self.fc1(x)))


class ViTBlock(nn.Module):
    """Pre-norm transformer block; window > 0 means windowed attention, 0 global attention.

    Args:
        dim: token width C.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / C.
        window: window side in tokens, or 0 for global attention.
        global_rel_pos_size: grid side of the relative-position tables of a global block.
        drop_path: stochastic-depth probability.
    """

    def __init__(self, *, dim: int, num_heads: int, mlp_ratio: float, window: int, global_rel_pos_size: int,
                 drop_path: float) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = RelPosAttention(dim=dim, num_heads=num_heads,
                                    rel_pos_size=window if window > 0 else global_rel_pos_size)
        self.drop_path = StochasticDepth(drop_path, mode="row")
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim=dim, hidden_dim=int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        b, h, w, _ = x.shape
        y = self.norm1(x)
        if self.window > 0:
            y = window_partition(y, self.window)
            y = window_unpartition(self.attn(y), batch=b, height=h, width=w)
        else:
            y = self.attn(y)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: (B, C_in, H, W) -> (B, H/p, W/p, dim)."""

    def __init__(self, *, in_channels: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, H/p, W/p, dim)."""
        return self.proj(images).permute(0, 2, 3, 1)


class ViTBody(nn.Module):
    """ViTDet backbone + simple pyramid returning C3, C4, C5 with channels (dim/2, dim, dim).

    Args:
        in_channels: image channels; 4 for the template branch.
        patch_size: patch side p (16); the tokens are the stride-16 level.
        dim: token width (ViT-H 1280).
        depth: number of blocks (ViT-H 32).
        num_heads: attention heads (ViT-H 16).
        mlp_ratio: MLP hidden width / dim (4).
        window_size: window side in tokens for windowed blocks (14).
        window_blocks: indices of the windowed blocks; all others attend globally.
        img_size: input side the global relative-position tables are sized for (official 1024 → 127 rows).
        pretrain_img_size: image side of the absolute position embedding (224 → 14 × 14 + class token).
        drop_path: stochastic-depth rate of the last block; rates grow linearly from 0.
    """

    def __init__(self, *, in_channels: int = 3, patch_size: int = 16, dim: int = 1280, depth: int = 32,
                 num_heads: int = 16, mlp_ratio: float = 4.0, window_size: int = 14,
                 window_blocks: Sequence[int] = (0, 1, 3, 4, 6, 7, 9, 10), img_size: int = 1024,
                 pretrain_img_size: int = 224, drop_path: float = 0.0) -> None:
        super().__init__()
        window_blocks = tuple(window_blocks)
        if any(not 0 <= i < depth for i in window_blocks):
            raise ValueError(f"window_blocks must index blocks 0..{depth - 1}, got {window_blocks}")
        if dim % 2 != 0:
            raise ValueError(f"dim must be even (the stride-8 level has dim/2 channels), got {dim}")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
        self.patch_size = patch_size
        self.patch_embed = PatchEmbed(in_channels=in_channels, dim=dim, patch_size=patch_size)
        self.pretrain_grid = pretrain_img_size // patch_size
        # +1: the pretraining class token's position, kept for checkpoint compatibility and dropped in forward.
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pretrain_grid**2 + 1, dim))
        rates = linear_drop_path_rates(drop_path, depth)
        self.blocks = nn.ModuleList([
            ViTBlock(dim=dim, num_heads=num_heads, mlp_ratio=mlp_ratio,
                     window=window_size if i in window_blocks else 0,
                     global_rel_pos_size=img_size // patch_size, drop_path=rates[i])
            for i in range(depth)
        ])
        self.fpn1 = nn.Sequential(nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2))
        self.fpn2 = nn.Identity()
        self.fpn3 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.out_channels = (dim // 2, dim, dim)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # ViTDet init: truncated normal (std 0.02) linear weights, zero biases, LayerNorm (1, 0).
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def abs_pos_embed(self, height: int, width: int) -> torch.Tensor:
        """(1, height, width, dim) absolute position embedding, bicubically resized from the pretraining grid."""
        grid = self.pretrain_grid
        pos = self.pos_embed[:, 1:].reshape(1, grid, grid, -1)
        if (height, width) == (grid, grid):
            return pos
        pos = F.interpolate(pos.permute(0, 3, 1, 2), size=(height, width), mode="bicubic", align_corners=False)
        return pos.permute(0, 2, 3, 1)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Args: images (B, in_channels, H, W) float, H and W multiples of 32. Returns [C3, C4, C5]."""
        x = self.patch_embed(images)  # (B, H/16, W/16, dim)
        x = x + self.abs_pos_embed(x.shape[1], x.shape[2])
        for block in self.blocks:
            x = block(x)
        x = x.permute(0, 3, 1, 2)  # (B, dim, H/16, W/16)
        return [self.fpn1(x), self.fpn2(x), self.fpn3(x)]
