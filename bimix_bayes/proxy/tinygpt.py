"""A tiny byte-level GPT (decoder-only transformer) for the proxy study. Needs PyTorch.

Pre-norm blocks (LayerNorm, causal multi-head self-attention, LayerNorm, GELU MLP of width
``4 * d_model``), learned position embeddings, the output layer tied to the byte embedding
(vocabulary: the 256 byte values). With 2 layers, width 64 and context 128 it has about 124k
parameters and trains at about 30 steps/s (batch 32) on one laptop CPU core pair.

Examples
--------
>>> torch = import_torch()  # doctest: +SKIP
>>> model = build_model(ModelConfig(n_layer=1, d_model=16, n_head=2, context=8))  # doctest: +SKIP
>>> model(torch.zeros(2, 8, dtype=torch.long)).shape  # doctest: +SKIP
torch.Size([2, 8, 256])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["VOCAB_SIZE", "ModelConfig", "build_model", "count_parameters", "import_torch"]

VOCAB_SIZE = 256
INSTALL_HINT = "pip install -e '.[proxy]'"


def import_torch() -> Any:
    """Import PyTorch, or fail with the command that installs it.

    Examples
    --------
    >>> import_torch().__name__  # doctest: +SKIP
    'torch'
    """
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            "the proxy trainer needs PyTorch, which is not installed; install the optional "
            f"extra with `{INSTALL_HINT}` (it pins the CPU build torch==2.13.0)"
        ) from exc
    return torch


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the tiny GPT.

    Examples
    --------
    >>> ModelConfig().n_layer, ModelConfig().d_model, ModelConfig().context
    (2, 64, 128)
    """

    n_layer: int = 2
    d_model: int = 64
    n_head: int = 4
    context: int = 128
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_layer", "d_model", "n_head", "context"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"model {name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise ValueError(
                f"model d_model ({self.d_model}) must be a multiple of n_head ({self.n_head})"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model dropout must be in [0, 1), got {self.dropout}")


def build_model(config: ModelConfig) -> Any:
    """A fresh :class:`TinyGPT` (a ``torch.nn.Module``) initialised from torch's current RNG.

    ``model(ids)`` maps byte ids of shape ``(batch, time)`` (``time <= context``) to logits of
    shape ``(batch, time, 256)``.
    """
    torch = import_torch()
    nn = torch.nn
    F = torch.nn.functional

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d = config.d_model
            self.ln1 = nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.ln2 = nn.LayerNorm(d)
            self.fc = nn.Linear(d, 4 * d)
            self.out = nn.Linear(4 * d, d)
            self.drop = nn.Dropout(config.dropout)

        def forward(self, x: Any) -> Any:
            b, t, d = x.shape
            h = config.n_head
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
            q, k, v = (z.view(b, t, h, d // h).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=config.dropout if self.training else 0.0
            )
            x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))
            return x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))

    class TinyGPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = config
            self.tok = nn.Embedding(VOCAB_SIZE, config.d_model)
            self.pos = nn.Embedding(config.context, config.d_model)
            self.blocks = nn.ModuleList(Block() for _ in range(config.n_layer))
            self.ln_f = nn.LayerNorm(config.d_model)
            self.apply(self._init)
            for block in self.blocks:  # GPT-2: scale the residual projections by depth
                for lin in (block.proj, block.out):
                    nn.init.normal_(lin.weight, std=0.02 / (2 * config.n_layer) ** 0.5)

        @staticmethod
        def _init(module: Any) -> None:
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)

        def forward(self, ids: Any) -> Any:
            t = ids.shape[1]
            if t > config.context:
                raise ValueError(
                    f"sequence of {t} bytes is longer than the context {config.context}"
                )
            x = self.tok(ids) + self.pos(torch.arange(t, device=ids.device))
            for block in self.blocks:
                x = block(x)
            return self.ln_f(x) @ self.tok.weight.T  # tied output layer

    return TinyGPT()


def count_parameters(model: Any) -> int:
    """Number of trainable parameters (tied weights counted once)."""
    seen = {id(p): p.numel() for p in model.parameters() if p.requires_grad}
    return int(sum(seen.values()))
