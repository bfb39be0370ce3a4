"""Streaming safetensors writer and the block-by-block Hugging Face export."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from logah.config import get_preset
from logah.nn import build_model
from logah.nn.hf import export_hf
from logah.nn.stream import (
    SafetensorsReader,
    SafetensorsStreamWriter,
    StreamWriteError,
    stream_export_hf,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_writer_output_is_a_standard_safetensors_file(tmp_path, dtype) -> None:
    tensors = {"a": torch.randn(3, 5), "b.bias": torch.randn(7), "c": torch.randn(2, 3, 4, 4)}
    path = tmp_path / "x.safetensors"
    with SafetensorsStreamWriter(path, {n: t.shape for n, t in tensors.items()}, dtype,
                                 metadata={"format": "pt"}) as w:
        for n, t in tensors.items():
            w.write(n, t)
    back = load_file(str(path))
    assert set(back) == set(tensors)
    reader = SafetensorsReader(path)  # plain reads, no memory map
    for n, t in tensors.items():
        assert back[n].dtype == dtype
        torch.testing.assert_close(back[n], t.to(dtype))
        assert torch.equal(reader.get_tensor(n), back[n])


def test_writer_rejects_mismatches_and_leaves_nothing_half_written(tmp_path) -> None:
    path = tmp_path / "x.safetensors"
    shapes = {"a": (2, 2), "b": (3,)}
    with pytest.raises(StreamWriteError, match="expected 'a'"):
        with SafetensorsStreamWriter(path, shapes) as w:
            w.write("b", torch.zeros(3))
    with pytest.raises(StreamWriteError, match=r"'a' has shape \[2, 3\]"):
        with SafetensorsStreamWriter(path, shapes) as w:
            w.write("a", torch.zeros(2, 3))
    with pytest.raises(StreamWriteError, match="before tensor 'b'"):
        with SafetensorsStreamWriter(path, shapes) as w:
            w.write("a", torch.zeros(2, 2))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("arch,tied",
                         [("gpt2-tiny", True), ("gpt2-tiny", False), ("vit-tiny", None)])
def test_stream_export_hf_equals_the_in_memory_export(tmp_path, arch, tied) -> None:
    spec = get_preset(arch)
    if tied is not None:
        spec = spec.replace(tie_embeddings=tied)
    state = {n: p.detach() for n, p in build_model(spec, seed=0).named_parameters()}
    weights = tmp_path / "model.safetensors"
    with SafetensorsStreamWriter(weights, {n: t.shape for n, t in state.items()}) as w:
        for n, t in state.items():
            w.write(n, t)
    stream_export_hf(spec, weights, tmp_path / "streamed")
    export_hf(spec, state, tmp_path / "memory")
    a = load_file(str(tmp_path / "streamed" / "model.safetensors"))
    b = load_file(str(tmp_path / "memory" / "model.safetensors"))
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "streamed" / "config.json").read_text() == (
        tmp_path / "memory" / "config.json").read_text()
