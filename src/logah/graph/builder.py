"""The walk over a ``torch.fx`` graph that creates architecture-graph nodes (see trace.py).

Every fx value is abstracted to what the graph needs: the set of graph nodes whose output it
carries (``_T``), a parameter not yet consumed by an op (``_P``), a tuple of tensors (``_Seq``) or
a non-tensor value such as a shape (``_VALUE``: no data dependency). Supported modules and
vocabulary ops create nodes; every other op is transparent (its output carries the union of its
inputs), as in the reference, where unsupported autograd nodes are removed and their neighbours
rewired. Nodes are created in execution order, so node ids are a topological order.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from logah.graph.errors import UnsupportedModuleError, describe
from logah.graph.fused import group_of
from logah.graph.primitives import (
    ADD_OPS, CAT_OPS, FACTORIES, FUNCTION_TYPES, MATMUL_OPS, MODULE_TYPES, MUL_OPS, PARAM_FUNCTIONS,
    PARAM_VIEW_OPS, SEQ_OPS, TENSOR_ATTRS, TRANSPARENT_MODULES, VALUE_METHODS, conv_kind,
    conv_type,
)
from logah.graph.shapes import free4, pad4

_NORMS = {nn.LayerNorm: "ln", nn.BatchNorm1d: "bn", nn.BatchNorm2d: "bn", nn.RMSNorm: "rmsnorm"}
_VALUE = object()  # a non-tensor value (shape, size, dtype, None, ...)
_EMPTY: frozenset[int] = frozenset()


@dataclass(frozen=True)
class _T:
    """A tensor carrying the outputs of graph nodes ``src`` (empty for constants / positions)."""

    src: frozenset[int]


@dataclass(frozen=True)
class _Seq:
    """A tuple of tensors (``chunk``, ``split``, ``nn.MultiheadAttention`` output)."""

    src: frozenset[int]


@dataclass(frozen=True, eq=False)
class _P:
    """A parameter read by ``get_attr``, not yet consumed by an op (``path``: where it was read)."""

    param: nn.Parameter
    path: str


@dataclass
class Node:
    """One graph node: primitive name, readable name, predecessors, owned parameters, shape."""

    type: str
    name: str
    preds: set[int]
    params: list[str] = field(default_factory=list)
    shape: tuple[int, int, int, int] = (0, 0, 0, 0)


@dataclass
class _Fused:
    """A fused group being traced: its output node, the input it reads, members called so far."""

    out: int
    src: frozenset[int]
    called: set[str]


def _union(vals) -> frozenset[int]:
    return frozenset().union(*(v.src for v in vals))


def _is_token_select(index) -> bool:
    """``x[:, i]`` / ``x[:, i, :]``: picks one position of the sequence (class-token readout)."""
    return (isinstance(index, tuple) and len(index) >= 2 and index[0] == slice(None)
            and any(isinstance(i, int) and not isinstance(i, bool) for i in index[1:]))


class Builder:
    """Walks the fx graph once, mapping fx nodes to abstract values and creating graph nodes."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modules = dict(model.named_modules())
        self.nodes: list[Node] = [Node("input", "input", set())]
        self.names = {id(p): n for n, p in model.named_parameters()}  # first name of a shared one
        self.owner: dict[int, int] = {}
        self.vals: dict[fx.Node, object] = {}
        self.seen: dict[str, int] = {}  # node name -> times used, to keep names unique
        self.rows: dict[int, tuple[int, int]] = {}  # id(param) -> rows of its node's tensor
        self.fused: dict[tuple[str, tuple[str, ...]], _Fused] = {}

    # ---- helpers ------------------------------------------------------------------------------
    def new(self, type_: str, name: str, preds) -> int:
        """Append a node; one fed by nothing computed (embedding, class token) hangs off input."""
        seen = self.seen[name] = self.seen.get(name, 0) + 1
        if seen > 1:  # a module called again (weight sharing): "ln", "ln#2", ...
            name = f"{name}#{seen}"
        self.nodes.append(Node(type_, name, set(preds) or {0}))
        return len(self.nodes) - 1

    def claim(self, i: int, param: nn.Parameter, shape4: tuple[int, int, int, int]) -> None:
        """Node ``i`` owns ``param``; if another node already does (tied weights), link them."""
        self.claim_rows(i, [param], shape4)

    def claim_rows(self, i: int, params: list[nn.Parameter],
                   shape4: tuple[int, int, int, int]) -> None:
        """Node ``i`` owns ``params`` stacked along dim 0 (a fused group; one param: all rows).

        ``shape4`` is the first parameter's 4-D shape; the node's is (sum of rows, in, kh, kw).
        Parameters already owned elsewhere (tied weights, a module called again) link instead.
        """
        owned = [p for p in params if id(p) in self.owner]
        for p in owned:
            if self.owner[id(p)] != i:
                self.nodes[i].preds.add(self.owner[id(p)])
        if owned:
            return
        node = self.nodes[i]
        if not any(node.shape):
            total = sum(int(p.shape[0]) for p in params) if len(params) > 1 else shape4[0]
            node.shape = (total, *shape4[1:])
        start = 0
        for p in params:
            n = int(p.shape[0]) if len(params) > 1 else node.shape[0]
            self.rows[id(p)] = (start, start + n)
            self.owner[id(p)] = i
            node.params.append(self.names[id(p)])
            start += n

    def weight_and_bias(self, kind: str, name: str, src, weights: list[nn.Parameter],
                        biases: list[nn.Parameter], bias_name: str | None = None) -> int:
        """The one Linear/Conv rule: a ``kind`` node owning ``weights`` (stacked rows when fused),
        then a ``bias`` node owning ``biases`` after it; returns the last node."""
        i = self.new(kind, name, src)
        self.claim_rows(i, weights, pad4(weights[0].shape))
        if biases:
            j = self.new("bias", bias_name or f"{name}.bias", {i})
            self.claim_rows(j, biases, pad4(biases[0].shape))
            i = j
        return i

    def module_at(self, n: fx.Node) -> tuple[str, nn.Module]:
        stack = n.meta.get("nn_module_stack") or {}
        path = next(reversed(stack.values()))[0] if stack else ""
        return path, self.modules.get(path, self.model)

    def node_name(self, n: fx.Node) -> str:
        path, _ = self.module_at(n)
        return f"{path}:{n.name}" if path else n.name

    def as_tensor(self, v: object, n: fx.Node) -> object:
        """A parameter consumed by an op that has no rule for free parameters must be owned."""
        if not isinstance(v, _P):
            return v
        owner = self.owner.get(id(v.param))
        if owner is None:
            path, mod = self.module_at(n)
            raise UnsupportedModuleError(
                f"{describe(path, mod)}: parameter '{self.names[id(v.param)]}' is used by "
                f"'{getattr(n.target, '__name__', n.target)}', which the graph builder does not "
                "support for a free parameter (supported: matmul/linear, add, cat)"
            )
        return _T(frozenset({owner}))

    def src(self, arg) -> frozenset[int]:
        v = self.vals.get(arg) if isinstance(arg, fx.Node) else None
        return v.src if isinstance(v, _T | _Seq) else _EMPTY

    # ---- dispatch -----------------------------------------------------------------------------
    def visit(self, n: fx.Node) -> object:
        if n.op == "placeholder":
            return _T(frozenset({0}))
        if n.op == "get_attr":
            obj = self.model
            for part in n.target.split("."):
                obj = getattr(obj, part)
            if isinstance(obj, nn.Parameter):
                return _P(obj, self.module_at(n)[0])
            return _T(_EMPTY)  # buffers and constants carry no computed value
        if n.op == "call_module":
            return self.call_module(n)
        if n.op in ("call_function", "call_method"):
            return self.call_function(n)
        return _VALUE  # output

    def call_function(self, n: fx.Node) -> object:
        t = n.target
        if t is getattr:
            return self.vals[n.args[0]] if n.args[1] in TENSOR_ATTRS else _VALUE
        if t in VALUE_METHODS:
            return _VALUE
        if t in FACTORIES:
            return _T(_EMPTY)
        ops = [self.vals[a] for a in n.all_input_nodes]
        params = [v for v in ops if isinstance(v, _P)]
        tens = [v for v in ops if isinstance(v, _T | _Seq)]
        if not params and not tens:
            return _VALUE
        if t is operator.getitem:
            return self.getitem(n, tens, params)
        if params and not tens and len(params) == 1 and t in PARAM_VIEW_OPS:
            return params[0]  # e.g. cls_token.expand(B, -1, -1): still the parameter
        if t in ADD_OPS:
            return self.add(n, tens, params)
        if t in CAT_OPS:
            return self.cat(n, tens, params)
        if t in MATMUL_OPS:
            return self.matmul(n, tens, params)
        if t in PARAM_FUNCTIONS:
            return self.param_function(n, PARAM_FUNCTIONS[t], tens, params)
        tens += [self.as_tensor(p, n) for p in params]
        src = _union(tens)
        if t in MUL_OPS and sum(bool(v.src) for v in tens) >= 2:
            return _T(frozenset({self.new("gate", self.node_name(n), src)}))
        if t in FUNCTION_TYPES:
            return _T(frozenset({self.new(FUNCTION_TYPES[t], self.node_name(n), src)}))
        return _Seq(src) if t in SEQ_OPS else _T(src)

    def getitem(self, n: fx.Node, tens: list, params: list) -> object:
        base = self.vals[n.args[0]]
        if isinstance(base, _P):
            return base
        if base is _VALUE:
            return _VALUE
        src = _union(tens + [self.as_tensor(p, n) for p in params])
        if isinstance(base, _T) and _is_token_select(n.args[1]):
            return _T(frozenset({self.new("select", self.node_name(n), src)}))
        return _T(src)

    def add(self, n: fx.Node, tens: list, params: list) -> _T:
        """Residual / embedding add -> ``sum``; free 1-D param -> ``bias``; (1,T,D) -> pos_enc."""
        for p in params:
            if id(p.param) in self.owner:
                tens.append(_T(frozenset({self.owner[id(p.param)]})))
            elif p.param.ndim <= 1:
                i = self.new("bias", self.names[id(p.param)], _union(tens))
                self.claim(i, p.param, pad4(p.param.shape))
                tens = [_T(frozenset({i}))]
            else:
                i = self.new("pos_enc", self.names[id(p.param)], ())
                self.claim(i, p.param, free4(p.param.shape))
                tens.append(_T(frozenset({i})))
        src = _union(tens)
        if sum(bool(v.src) for v in tens) >= 2:
            return _T(frozenset({self.new("sum", self.node_name(n), src)}))
        return _T(src)

    def cat(self, n: fx.Node, tens: list, params: list) -> _T:
        """Concatenation; a free parameter concatenated to the sequence is a learned token."""
        for p in params:
            if id(p.param) not in self.owner:
                i = self.new("cls_token", self.names[id(p.param)], ())
                self.claim(i, p.param, free4(p.param.shape))
            tens.append(_T(frozenset({self.owner[id(p.param)]})))
        src = _union(tens)
        if sum(bool(v.src) for v in tens) >= 2:
            return _T(frozenset({self.new("concat", self.node_name(n), src)}))
        return _T(src)

    def matmul(self, n: fx.Node, tens: list, params: list) -> _T:
        """``x @ W`` -> ``conv`` owning W (or linked to W's owner: a tied LM head).

        ``attn @ v`` after a softmax: V joins the ``msa`` node's inputs (reference rule), when that
        keeps the order topological.
        """
        if len(params) == 1 and tens:
            pname = self.names[id(params[0].param)]
            tied = id(params[0].param) in self.owner
            name = f"{self.node_name(n)}({pname})" if tied else pname.rpartition(".")[0] or pname
            i = self.new("conv", name, _union(tens))
            self.claim(i, params[0].param, pad4(params[0].param.shape))
            return _T(frozenset({i}))
        tens = tens + [self.as_tensor(p, n) for p in params]
        if len(tens) == 2:
            for a, b in (tens, tens[::-1]):
                if len(a.src) == 1:
                    (m,) = a.src
                    if self.nodes[m].type == "msa" and all(s < m for s in b.src):
                        self.nodes[m].preds |= b.src
                        return _T(a.src)
        return _T(_union(tens))

    def param_function(self, n: fx.Node, prim: str, tens: list, params: list) -> _T:
        """Functional ops with weights: ``F.linear``/``conv`` (weight -> conv, bias -> bias node),
        ``F.layer_norm``/``rms_norm``/``embedding`` (one node owning every parameter operand)."""
        name = self.node_name(n)
        if prim == "conv" and params:
            groups = n.kwargs.get("groups", n.args[6] if len(n.args) > 6 else 1)
            dil = n.kwargs.get("dilation", n.args[5] if len(n.args) > 5 else 1)
            kind = conv_type(groups, dil) if isinstance(groups, int) else "conv"
            i = self.weight_and_bias(kind, name, _union(tens), [params[0].param],
                                     [p.param for p in params[1:2]], f"{name}:bias")
            return _T(frozenset({i}))
        i = self.new(prim, name, _union(tens))
        for p in params:
            self.claim(i, p.param, pad4(p.param.shape))
        return _T(frozenset({i}))

    def call_module(self, n: fx.Node) -> object:
        path, m = n.target, self.modules[n.target]
        src = _union(self.as_tensor(self.vals[a], n) for a in n.all_input_nodes
                     if isinstance(self.vals[a], _T | _Seq | _P))
        if isinstance(m, TRANSPARENT_MODULES):
            return _T(src)
        if type(m) in MODULE_TYPES:
            return _T(frozenset({self.new(MODULE_TYPES[type(m)], path, src)}))
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d):
            parent, _, child = path.rpartition(".")
            group = group_of(self.modules[parent], child)
            if group is not None:
                return self.fused_call(path, src, parent, group)
            i = self.weight_and_bias(conv_kind(m), path, src, [m.weight],
                                     [m.bias] if m.bias is not None else [])
            return _T(frozenset({i}))
        if type(m) in _NORMS or isinstance(m, nn.Embedding):
            i = self.new(_NORMS.get(type(m), "pos_enc"), path, src)
            for p in m.parameters(recurse=False):
                self.claim(i, p, pad4(p.shape))
            return _T(frozenset({i}))
        return self.attention(n, m)

    def attention(self, n: fx.Node, m: nn.MultiheadAttention) -> _Seq:
        """``nn.MultiheadAttention``: in-projection(s) -> in_proj bias -> msa -> out_proj, bias."""
        path = n.target
        names = ("query", "key", "value")
        qkv = [n.args[j] if j < len(n.args) else n.kwargs.get(names[j]) for j in range(3)]
        bias = [m.in_proj_bias] if m.in_proj_bias is not None else []
        if m._qkv_same_embed_dim:
            last = {self.weight_and_bias("conv", f"{path}.in_proj",
                                         _union(_T(self.src(a)) for a in qkv), [m.in_proj_weight],
                                         bias, f"{path}.in_proj_bias")}
        else:
            last = set()
            for r, a in zip("qkv", qkv):
                w = getattr(m, f"{r}_proj_weight")
                i = self.new("conv", f"{path}.{r}_proj", self.src(a))
                self.claim(i, w, pad4(w.shape))
                last.add(i)
            if bias:
                i = self.new("bias", f"{path}.in_proj_bias", last)
                self.claim(i, bias[0], pad4(bias[0].shape))
                last = {i}
        extras = set()
        for extra in ("bias_k", "bias_v"):  # learned extra key / value rows, beside the projection
            p = getattr(m, extra)
            if p is not None:
                i = self.new("bias", f"{path}.{extra}", last)
                self.claim(i, p, free4(p.shape))
                extras.add(i)
        last = last | extras
        i = self.new("msa", f"{path}:msa", last)
        out = m.out_proj
        i = self.weight_and_bias("conv", f"{path}.out_proj", {i}, [out.weight],
                                 [out.bias] if out.bias is not None else [])
        return _Seq(frozenset({i}))

    def fused_call(self, path: str, src: frozenset[int], parent: str,
                   group: tuple[str, ...]) -> _T:
        """A member of a declared fused group (see :mod:`logah.graph.fused`): the group's first
        call creates one node for all members' weights (and one for their biases); the other
        members, called on the same input, read that node's output. A member called twice
        starts a new round (a module called again reuses its parameters)."""
        child = path.rpartition(".")[2]
        state = self.fused.get((parent, group))
        if state is None or child in state.called:
            mods = [self.modules.get(f"{parent}.{c}" if parent else c) for c in group]
            self._check_fused(path, group, mods)
            name = f"{parent}.[{','.join(group)}]" if parent else f"[{','.join(group)}]"
            biases = [m.bias for m in mods if m.bias is not None]
            out = self.weight_and_bias(conv_kind(mods[0]), name, src, [m.weight for m in mods], biases)
            state = self.fused[(parent, group)] = _Fused(out, src, set())
        elif src != state.src:
            raise UnsupportedModuleError(
                f"{describe(path, self.modules[path])}: declared in the fused group "
                f"{list(group)} of '{parent}', but it reads a different input than the group's "
                "first member (fused projections must read the same input in parallel)")
        state.called.add(child)
        return _T(frozenset({state.out}))

    def _check_fused(self, path: str, group: tuple[str, ...], mods: list) -> None:
        """Members: same layer type and kind, same input features / kernel, biases all or none."""
        first = mods[0]
        bad = next((c for c, m in zip(group, mods) if type(m) is not type(first)
                    or not isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)
                    or pad4(m.weight.shape)[1:] != pad4(first.weight.shape)[1:]
                    or conv_kind(m) != conv_kind(first) or (m.bias is None) != (first.bias is None)),
                   None)
        if bad is not None:
            raise UnsupportedModuleError(
                f"{describe(path, self.modules[path])}: fused group {list(group)}: member "
                f"'{bad}' is not a layer of the same type, input size, kernel and bias as "
                f"'{group[0]}'")
