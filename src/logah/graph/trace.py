"""Model -> graph nodes and real edges, from module structure and a ``torch.fx`` symbolic trace.

The trace is a program (call_module / call_function / get_attr nodes in execution order), not an
autograd graph, so it does not depend on how torch implements an op (SDPA hides its softmax from
autograd; the reference builder therefore loses attention) and it needs no computation at all: the
model may live on the ``meta`` device. Supported ``torch.nn`` modules are leaves of the trace;
user modules and containers are traced through. :mod:`logah.graph.builder` turns the trace into
nodes.
"""

from __future__ import annotations

import torch.fx as fx
from torch import nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from logah.graph.builder import Builder, Node
from logah.graph.errors import UnsupportedModuleError, describe
from logah.graph.primitives import CONTAINERS, MODULE_TYPES, PARAM_MODULES, TRANSPARENT_MODULES

_LEAVES = {*PARAM_MODULES, *TRANSPARENT_MODULES, *MODULE_TYPES, NonDynamicallyQuantizableLinear}


def _is_leaf(m: nn.Module) -> bool:
    if isinstance(m, CONTAINERS):
        return False
    return type(m) in _LEAVES or type(m).__module__.startswith(("torch.nn.", "torch.ao.nn."))


class _Tracer(fx.Tracer):
    """Stops at the supported ``torch.nn`` modules; names the module on any failure inside it."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _is_leaf(m)

    def call_module(self, m, forward, args, kwargs):
        path = self.path_of_module(m)
        if _is_leaf(m) and type(m) not in _LEAVES:
            names = sorted(t.__name__ for t in _LEAVES)
            raise UnsupportedModuleError(
                f"{describe(path, m)} is not supported by the graph builder "
                f"(supported torch.nn modules: {', '.join(names)})"
            )
        try:
            return super().call_module(m, forward, args, kwargs)
        except UnsupportedModuleError:
            raise
        except Exception as e:  # fx.TraceError, or a proxy used where a value is needed
            raise UnsupportedModuleError(
                f"{describe(path, m)} cannot be traced by torch.fx: {e}"
            ) from e


def trace_nodes(model: nn.Module
                ) -> tuple[list[Node], dict[int, int], dict[int, tuple[int, int]]]:
    """Trace ``model`` and build its nodes (node 0 = input, ids topological).

    Returns:
        nodes, ``owner`` (``id(param)`` -> node id) and ``rows`` (``id(param)`` -> the rows
        [start, stop) of its node's 4-D tensor that it is: all of them unless fused).
    """
    try:
        graph = _Tracer().trace(model)
    except UnsupportedModuleError:
        raise
    except Exception as e:
        raise UnsupportedModuleError(
            f"{describe('', model)} cannot be traced by torch.fx: {e}"
        ) from e
    builder = Builder(model)
    for n in graph.nodes:
        builder.vals[n] = builder.visit(n)
    return builder.nodes, builder.owner, builder.rows


