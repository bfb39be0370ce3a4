"""Declared fused projections: one node per group, (node, row slice) per parameter, bad groups."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from logah.config.ghn import GHNConfig
from logah.ghn import GHN
from logah.graph import PRIMITIVES, UnsupportedModuleError, build_graph, register_fused
from logah.graph.fused import fused_groups


class GatedMLP(nn.Module):
    """Llama-style: silu(gate(x)) * up(x) -> down; gate/up declared as one node."""

    fused_projections = (("gate", "up"),)

    def __init__(self, d: int = 8, f: int = 12) -> None:
        super().__init__()
        self.gate = nn.Linear(d, f, bias=False)
        self.up = nn.Linear(d, f, bias=False)
        self.down = nn.Linear(f, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class GQA(nn.Module):
    """Grouped-query attention projections: q has more rows than k and v (registered, not an
    attribute: a class one cannot edit)."""

    def __init__(self, d: int = 8, heads: int = 4, kv_heads: int = 2, dh: int = 2) -> None:
        super().__init__()
        self.q_proj = nn.Linear(d, heads * dh, bias=False)
        self.k_proj = nn.Linear(d, kv_heads * dh, bias=False)
        self.v_proj = nn.Linear(d, kv_heads * dh, bias=False)
        self.o_proj = nn.Linear(kv_heads * dh, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        att = torch.softmax(q[..., : k.shape[-1]] @ k.transpose(-1, -2), dim=-1)
        return self.o_proj(att @ v)


def _node(g, name: str) -> int:
    return dict(zip(g.param_names, g.param_node_index.tolist()))[name]


def test_gate_up_are_one_node_with_row_slices() -> None:
    g = build_graph(GatedMLP())
    fused = _node(g, "gate.weight")
    assert _node(g, "up.weight") == fused
    assert PRIMITIVES[g.node_type[fused]] == "conv"
    assert g.node_names[fused] == "[gate,up]"
    assert g.node_shape[fused].tolist() == [24, 8, 1, 1]
    rows = dict(zip(g.param_names, g.param_rows.tolist()))
    assert rows == {"gate.weight": [0, 12], "up.weight": [12, 24], "down.weight": [0, 8]}
    # silu(gate) and the product both read the fused node: act <- fused, gate <- {act, fused}
    preds = {v: set() for v in range(g.num_nodes)}
    for u, v in g.edge_index.t().tolist():
        preds[v].add(u)
    act = g.node_type.tolist().index(PRIMITIVES.index("act"))
    prod = g.node_type.tolist().index(PRIMITIVES.index("gate"))
    assert preds[act] == {fused} and preds[prod] == {act, fused}


def test_registered_gqa_group_stacks_unequal_rows() -> None:
    register_fused(GQA, ("q_proj", "k_proj", "v_proj"))
    assert fused_groups(GQA()) == (("q_proj", "k_proj", "v_proj"),)
    g = build_graph(GQA())
    node = _node(g, "q_proj.weight")
    assert {_node(g, f"{r}_proj.weight") for r in "kv"} == {node}
    assert g.node_shape[node].tolist() == [8 + 4 + 4, 8, 1, 1]
    rows = dict(zip(g.param_names, g.param_rows.tolist()))
    assert [rows[f"{r}_proj.weight"] for r in "qkv"] == [[0, 8], [8, 12], [12, 16]]


def test_random_ghn_predicts_different_fused_slices() -> None:
    """Fused members differ (gate != up); the ablation ghn.fused=false makes them equal again."""
    g = build_graph(GatedMLP(d=16, f=32))
    with torch.no_grad():
        p = GHN(GHNConfig(preset="logah-t"), seed=0)(g)[0]
        same = GHN(GHNConfig(preset="logah-t", fused=False), seed=0)(g)[0]
    assert (p["gate.weight"] - p["up.weight"]).abs().max() > 1e-3
    torch.testing.assert_close(same["gate.weight"], same["up.weight"], rtol=0, atol=0)


class _Twice(nn.Module):
    """A module called twice: the second call is a new fused node linked to the first."""

    fused_projections = (("a", "b"),)

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x) + self.b(x)
        return self.a(y) + self.b(y)


def test_group_called_twice_reuses_parameters() -> None:
    g = build_graph(_Twice())
    names = g.node_names
    assert "[a,b]" in names and "[a,b]#2" in names
    second = names.index("[a,b]#2")
    assert g.node_shape[second].tolist() == [0, 0, 0, 0]  # no tensor of its own
    owners = set(g.param_node_index.tolist())
    assert names.index("[a,b]") in owners and second not in owners


class _DifferentInputs(nn.Module):
    fused_projections = (("a", "b"),)

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


class _Mismatch(nn.Module):
    fused_projections = (("a", "b"),)

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(torch.cat([x, x[..., :1]], -1))


@pytest.mark.parametrize("module,words", [
    (_DifferentInputs, ["module 'b'", "fused group ['a', 'b']", "different input"]),
    (_Mismatch, ["fused group ['a', 'b']", "member 'b'"]),
])
def test_bad_groups_are_one_clear_error(module, words) -> None:
    with pytest.raises(UnsupportedModuleError) as e:
        build_graph(module())
    assert all(w in str(e.value) for w in words), str(e.value)


def test_bad_declarations_are_refused() -> None:
    with pytest.raises(ValueError, match="at least|>= 2"):
        register_fused(GQA, ("q_proj",))
    with pytest.raises(ValueError, match="more than one"):
        register_fused(GQA, ("q_proj", "k_proj"), ("k_proj", "v_proj"))
