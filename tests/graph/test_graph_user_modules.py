"""A user's own modules: supported building blocks become nodes, anything else one clear error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from logah.config import LogahError
from logah.graph import PRIMITIVES, UnsupportedModuleError, build_graph


def _meta(cls, *args):
    with torch.device("meta"):
        return cls(*args)


def _preds(g) -> dict[str, set[str]]:
    out = {name: set() for name in g.node_names}
    for u, v in g.edge_index.t().tolist():
        out[g.node_names[v]].add(g.node_names[u])
    return out


def _types(g) -> list[str]:
    return [PRIMITIVES[t] for t in g.node_type.tolist()]


class ConvSeq(nn.Module):
    """Conv2d/Conv1d, pooling, LayerNorm, MultiheadAttention, activations, residuals."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv1d = nn.Conv1d(16, 16, 3, padding=1, groups=4)
        self.ln = nn.LayerNorm(16)
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(16, 32), nn.SiLU(), nn.Dropout(0.1), nn.Linear(32, 16))
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        h = self.pool(F.relu(self.conv(x))).flatten(2)  # (B, 16, T)
        h = self.conv1d(h).transpose(1, 2)  # (B, T, 16)
        a, _ = self.mha(self.ln(h), self.ln(h), self.ln(h))
        h = h + a
        h = h + self.mlp(h)
        return self.fc(self.gap(h.transpose(1, 2)).squeeze(-1))


def test_supported_modules_become_the_expected_nodes():
    g = build_graph(_meta(ConvSeq), cutoff=5)
    assert g.spec_key == ""
    # LayerNorm called three times: one node owns its parameters, the next two reuse them (and
    # are linked to the owner); Dropout is transparent; F.relu is a node of its own.
    assert _types(g) == [
        "input", "conv", "bias", "relu", "max_pool", "sep_conv", "bias", "ln", "ln", "ln",
        "conv", "bias", "msa", "conv", "bias", "sum", "conv", "bias", "act", "conv", "bias", "sum",
        "glob_avg", "conv", "bias",
    ]
    preds = _preds(g)
    assert preds["mha.in_proj"] == {"ln", "ln#2", "ln#3"}
    assert preds["ln#2"] == {"ln", "conv1d.bias"}  # the reuse is linked to the owner
    assert len(set(g.node_names)) == g.num_nodes
    assert preds["mha:msa"] == {"mha.in_proj_bias"}
    assert preds["mha.out_proj"] == {"mha:msa"}
    owner = dict(zip(g.param_names, g.param_node_index.tolist()))
    assert g.node_shape[owner["conv.weight"]].tolist() == [16, 3, 3, 3]
    assert g.node_shape[owner["conv1d.weight"]].tolist() == [16, 4, 3, 1]
    assert g.node_shape[owner["mha.in_proj_weight"]].tolist() == [48, 16, 1, 1]
    assert owner["ln.weight"] == owner["ln.bias"]
    assert len(g.param_names) == len(dict(_meta(ConvSeq).named_parameters()))


class ManualAttention(nn.Module):
    """nanoGPT-style attention written with matmul + softmax, an embedding and a free bias."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.q, self.k, self.v, self.o = (nn.Linear(8, 8) for _ in range(4))
        self.offset = nn.Parameter(torch.zeros(8))
        self.out = nn.Parameter(torch.zeros(8, 50))

    def forward(self, idx):
        x = self.emb(idx)
        q, k, v = self.q(x), self.k(x), self.v(x)
        att = F.softmax(q @ k.transpose(-2, -1) / (k.size(-1) ** 0.5), dim=-1)
        x = x + self.o(att @ v)
        return (F.gelu(x) + self.offset) @ self.out


def test_manual_attention_gets_one_msa_node_fed_by_qkv():
    g = build_graph(_meta(ManualAttention))
    preds = _preds(g)
    msa = [n for n, t in zip(g.node_names, _types(g)) if t == "msa"]
    assert len(msa) == 1
    assert preds[msa[0]] == {"q.bias", "k.bias", "v.bias"}
    assert preds["o"] == {msa[0]}
    assert preds["emb"] == {"input"}
    types = dict(zip(g.node_names, _types(g)))
    assert types["offset"] == "bias" and types["out"] == "conv"
    owner = dict(zip(g.param_names, g.param_node_index.tolist()))
    assert g.node_shape[owner["out"]].tolist() == [8, 50, 1, 1]


class WithLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4))

    def forward(self, x):
        return self.enc(x)


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else x


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.ModuleList([Branchy()])

    def forward(self, x):
        return self.body[0](x)


class Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.spare = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x)


class LayerScale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.gamma = nn.Parameter(torch.ones(4))

    def forward(self, x):
        return x + self.gamma * self.fc(x)


@pytest.mark.parametrize("cls,culprit", [
    (WithLSTM, r"module 'enc\.1' \(torch\.nn\.modules\.rnn\.LSTM\) is not supported"),
    (Outer, r"module 'body\.0' \(.*Branchy\) cannot be traced by torch\.fx"),
    (Unused, r"module 'spare' \(torch\.nn\.modules\.linear\.Linear\): parameter 'spare\.weight' "
             r"is never used"),
    (LayerScale, r"module '<root>' \(.*LayerScale\): parameter 'gamma' is used by 'mul'"),
])
def test_unsupported_raises_one_error_naming_module_path_and_type(cls, culprit):
    with pytest.raises(UnsupportedModuleError, match=culprit) as err:
        build_graph(_meta(cls))
    assert isinstance(err.value, LogahError)
    assert "\n" not in str(err.value)
