"""DeiT (a plain ViT with a class token) in plain torch, state_dict-compatible with timm's ``deit_tiny_patch16_224``.

Module and parameter names are timm's (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.N.norm1``,
``blocks.N.attn.qkv``/``proj``, ``blocks.N.norm2``, ``blocks.N.mlp.fc1``/``fc2``, ``norm``, ``head``), so the DeiT
release's checkpoint ``deit_tiny_patch16_224-a1311bcf.pth`` (``{"model": state_dict}``) loads with strict=True.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Attention", "Block", "DeiT", "Mlp", "PatchEmbed", "build_deit"]

LN_EPS = 1e-6  # DeiT's LayerNorm epsilon (torch's default is 1e-5)


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` patches, each projected to ``dim`` by one strided convolution."""

    def __init__(self, patch: int, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, H*W/patch**2, dim)``, patches in row-major order."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention: one ``qkv`` projection, softmax(q k^T / sqrt(head_dim)) v, output ``proj``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding dim {dim} is not a multiple of {heads} heads")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)  # DeiT has qkv biases
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        # (N, T, 3*D) -> (3, N, heads, T, head_dim); the batch stays -1 so that the exported batch axis is dynamic.
        qkv = self.qkv(x).reshape(-1, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(-1, tokens, dim))


class Mlp(nn.Module):
    """``fc1`` to ``hidden``, exact (erf) GELU, ``fc2`` back to ``dim``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DeiT(nn.Module):
    """Patch embedding, a class token, learned position embedding, ``depth`` blocks, LayerNorm, a linear head
    on the class token."""

    def __init__(self, image_size: int = 224, patch: int = 16, dim: int = 192, depth: int = 12, heads: int = 3,
                 mlp_ratio: float = 4.0, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}")
        self.patch_embed = PatchEmbed(patch, in_channels, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2 + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """timm's ViT init: truncated normal (std .02, cut at +-2) for the tokens, the position embedding and
        every Linear weight, zero biases, LayerNorm as identity; the patch convolution keeps torch's default."""
        for tensor in (self.pos_embed, self.cls_token):
            nn.init.trunc_normal_(tensor, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Every token after the final LayerNorm, ``(N, 1 + patches, dim)``; the class token first."""
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        return self.norm(self.blocks(x + self.pos_embed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, ``(N, num_classes)``, from the class token."""
        return self.head(self.forward_features(x)[:, 0])


def build_deit(image_size: int = 224, patch: int = 16, dim: int = 192, depth: int = 12, heads: int = 3,
               mlp_ratio: float = 4.0, num_classes: int = 1000) -> DeiT:
    """A DeiT of any size; the defaults are DeiT-Tiny (``deit_tiny_patch16_224``, 5,717,416 parameters)."""
    return DeiT(image_size, patch, dim, depth, heads, mlp_ratio, num_classes)
