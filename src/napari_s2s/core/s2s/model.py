"""CDCIN: cascaded data-consistent imputation network (residual dense networks with hybrid attention).

Each cascade is a residual dense network (RDN): a shallow feature extractor, ``blocks`` residual dense
blocks (``layers`` 3x3 convolutions with dense connections of ``growth`` channels, 1x1 fusion, local
residual) each followed by two hybrid attention blocks (HAT-style: windowed multi-head self-attention,
shift 0 then ``window // 2``, with a small channel-attention convolution branch scaled by 0.01, and an
MLP), global feature fusion and a 1-channel output added to the cascade's input estimate. Between
cascades a data-consistency step pulls the estimate back to the kept (measured) values: ``hard``
(re-insert them), ``soft`` (a learned pull ``x + sigmoid(a) * M * (x0 - x)``) or ``none``.

Any image size works: the attention blocks pad to a multiple of the window and build their shift masks
for whatever size they meet (cached), then crop back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NetSpec:
    """Architecture of a :class:`CDCIN` (saved with the weights)."""

    in_channels: int
    cascades: int = 3
    features: int = 32
    blocks: int = 8
    layers: int = 4
    growth: int = 32
    window: int = 8
    attention: bool = True
    heads: int = 4
    mlp_ratio: float = 4.0
    dc: str = "soft"
    base_channel: int | None = None


# ---------------------------------------------------------------------- attention
class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping windows, with relative position bias."""

    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.window = window
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = coords[:, :, None] - coords[:, None, :] + window - 1
        self.register_buffer("rel_index", rel[0] * (2 * window - 1) + rel[1], persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # x: (B*nW, N, C); mask: (nW, N, N) additive or None
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.bias_table[self.rel_index.reshape(-1)].reshape(n, n, self.heads).permute(2, 0, 1).contiguous()
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0).to(q.dtype))
        else:
            # one call per image against the (nW, heads, N, N) bias + shift mask: the same sums as one
            # call over the whole batch, without materialising the mask for every image of the batch
            nw = mask.shape[0]
            # contiguous (nW, heads, N, N): attention copies a strided mask on every call
            attn_bias = (mask[:, None] + bias.unsqueeze(0)).to(q.dtype).contiguous()
            out = torch.cat(
                [
                    F.scaled_dot_product_attention(q[i : i + nw], k[i : i + nw], v[i : i + nw], attn_mask=attn_bias)
                    for i in range(0, bw, nw)
                ]
            )
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class ChannelAttention(nn.Module):
    """Convolutional branch with squeeze-and-excitation channel attention (HAT's CAB)."""

    def __init__(self, dim: int, compress: int = 3, squeeze: int = 16):
        super().__init__()
        mid = max(dim // compress, 4)
        self.body = nn.Sequential(nn.Conv2d(dim, mid, 3, padding=1), nn.GELU(), nn.Conv2d(mid, dim, 3, padding=1))
        red = max(dim // squeeze, 2)
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, red, 1), nn.ReLU(inplace=True), nn.Conv2d(red, dim, 1), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y * self.se(y)


class HAB(nn.Module):
    """Hybrid attention block: (shifted) window attention + 0.01 x channel attention, then an MLP."""

    def __init__(self, dim: int, window: int, heads: int, shift: int, mlp_ratio: float):
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.cab = ChannelAttention(dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self._masks: dict = {}

    def _mask(self, hp: int, wp: int, device) -> torch.Tensor | None:
        if not self.shift:
            return None
        key = (hp, wp, str(device))
        m = self._masks.get(key)
        if m is None:
            ws, s = self.window, self.shift
            img = torch.zeros(hp, wp, device=device)
            cnt = 0
            for hs in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
                for wsl in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
                    img[hs, wsl] = cnt
                    cnt += 1
            win = img.reshape(hp // ws, ws, wp // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
            diff = win[:, None, :] - win[:, :, None]
            m = torch.zeros_like(diff).masked_fill(diff != 0, -100.0)
            self._masks[key] = m
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, Hp, Wp) with Hp, Wp multiples of the window
        b, c, hp, wp = x.shape
        ws = self.window
        conv = self.cab(x)
        t = x.permute(0, 2, 3, 1)
        y = self.norm1(t)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = y.reshape(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        y = self.attn(y, self._mask(hp, wp, x.device))
        y = y.reshape(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        t = t + y + 0.01 * conv.permute(0, 2, 3, 1)
        t = t + self.mlp(self.norm2(t))
        return t.permute(0, 3, 1, 2)


# ---------------------------------------------------------------------- residual dense network
class RDB(nn.Module):
    """Residual dense block, followed by two hybrid attention blocks when ``attention``."""

    def __init__(self, spec: NetSpec):
        super().__init__()
        g0, g = spec.features, spec.growth
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(g0 + i * g, g, 3, padding=1), nn.ReLU(inplace=True)) for i in range(spec.layers)
        )
        self.fuse = nn.Conv2d(g0 + spec.layers * g, g0, 1)
        self.habs = nn.ModuleList()
        if spec.attention:
            heads = max(1, min(spec.heads, g0 // 4))
            while g0 % heads:
                heads -= 1
            for shift in (0, spec.window // 2):
                self.habs.append(HAB(g0, spec.window, heads, shift, spec.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(conv(torch.cat(feats, 1)))
        y = self.fuse(torch.cat(feats, 1)) + x
        for hab in self.habs:
            y = hab(y)
        return y


class RDN(nn.Module):
    """One cascade: a residual dense network mapping input channels to a 1-channel correction."""

    def __init__(self, spec: NetSpec):
        super().__init__()
        g0 = spec.features
        self.window = spec.window if spec.attention else 1
        self.sfe1 = nn.Conv2d(spec.in_channels + 1, g0, 3, padding=1)
        self.sfe2 = nn.Conv2d(g0, g0, 3, padding=1)
        self.rdbs = nn.ModuleList(RDB(spec) for _ in range(spec.blocks))
        self.gff = nn.Sequential(nn.Conv2d(spec.blocks * g0, g0, 1), nn.Conv2d(g0, g0, 3, padding=1))
        self.out = nn.Conv2d(g0, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ws = self.window
        ph, pw = (-h) % ws, (-w) % ws
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        f1 = self.sfe1(x)
        y = self.sfe2(f1)
        outs = []
        for rdb in self.rdbs:
            y = rdb(y)
            outs.append(y)
        y = self.gff(torch.cat(outs, 1)) + f1
        return self.out(y)[..., :h, :w]


class CDCIN(nn.Module):
    """Cascade of RDNs with data-consistency steps.

    ``forward(channels)`` takes the input channels (B, Cin, H, W) of
    :func:`napari_s2s.core.s2s.sampling.make_channels` (channel 0: kept values, channel 1: kept mask) and
    returns the list of per-cascade estimates (B, 1, H, W), before the data-consistency step that
    follows each cascade. The first estimate starts from channel ``base_channel`` (a smoother: the
    network learns a residual over it) or from the kept values when ``None``.
    """

    def __init__(self, spec: NetSpec):
        super().__init__()
        if spec.dc not in ("hard", "soft", "none"):
            raise ValueError(f"dc must be hard, soft or none, not {spec.dc!r}")
        self.spec = spec
        self.nets = nn.ModuleList(RDN(spec) for _ in range(spec.cascades))
        self.dc_logit = nn.Parameter(torch.zeros(max(spec.cascades - 1, 1)))

    def forward(self, channels: torch.Tensor) -> list[torch.Tensor]:
        x0 = channels[:, 0:1]
        m = channels[:, 1:2]
        bc = self.spec.base_channel
        x = channels[:, bc : bc + 1] if bc is not None else x0
        outs = []
        for c, net in enumerate(self.nets):
            x = x + net(torch.cat([x, channels], 1))
            outs.append(x)
            if c < len(self.nets) - 1:
                x = self.consistency(x, x0, m, c)
        return outs

    def consistency(self, x: torch.Tensor, x0: torch.Tensor, m: torch.Tensor, c: int) -> torch.Tensor:
        """Data consistency after cascade ``c``."""
        if self.spec.dc == "hard":
            return (1 - m) * x + m * x0
        if self.spec.dc == "soft":
            lam = torch.sigmoid(self.dc_logit[c])
            return x + lam * m * (x0 - x)
        return x


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
