"""Structural lookups never read a row training did not train (nearest trained row instead)."""

from __future__ import annotations

import torch

from logah.config import get_preset
from logah.config.ghn import GHNConfig
from logah.ghn import GHN
from logah.ghn.embed import TrainedEmbedding
from logah.graph import graph_for_spec


def test_trained_embedding_falls_back_to_nearest_trained_key() -> None:
    emb = TrainedEmbedding(6, 3, keys=[0.0, 1.0, 2.0, 3.0, 4.0, 9.0], keep=5)
    emb(torch.tensor([1, 3]))  # training mode + grad: marks rows 1 and 3
    assert emb.trained.tolist() == [False, True, False, True, False, False]
    emb.eval()
    # 0 -> 1, 2 -> tie -> lower (1), 4 -> 3, 5 is the kept (dummy) row, trained rows stay
    assert emb.remap().tolist() == [1, 1, 1, 3, 3, 5]
    torch.testing.assert_close(emb(torch.tensor([4])), emb.weight[3:4])
    emb.fallback = False
    torch.testing.assert_close(emb(torch.tensor([4])), emb.weight[4:5])
    assert "trained" in emb.state_dict()  # saved with the GHN


def _rows_read(ghn: GHN, graph) -> dict[str, set[int]]:
    """Every row each TrainedEmbedding actually reads during a forward."""
    seen: dict[str, set[int]] = {}
    hooks = []
    for name, m in ghn.named_modules():
        if isinstance(m, TrainedEmbedding):
            def hook(mod, args, out, name=name):
                idx = args[0]
                if not mod.training and mod.fallback and bool(mod.trained.any()):
                    idx = mod.remap()[idx]
                seen.setdefault(name, set()).update(idx.flatten().tolist())
            hooks.append(m.register_forward_hook(hook))
    ghn([graph])
    for h in hooks:
        h.remove()
    return seen


def test_unseen_width_and_depth_read_no_untrained_row() -> None:
    """Train-mode forwards on ViTs of width <= 80 and depth <= 2 mark rows; a 4 x 96 ViT then
    reads only trained rows (96 and 384 are not among them) from every structural table."""
    ghn = GHN(GHNConfig(preset="logah-t"), seed=0).train()
    base = get_preset("vit-tiny").replace(image_size=32, in_chans=1, num_classes=10, patch_size=4)
    for d, layers in ((32, 1), (48, 2), (64, 2), (80, 1)):
        spec = base.replace(d_model=d, n_heads=2, d_qk=d // 2, d_v=d // 2, d_mlp=4 * d,
                            n_layer=layers)
        ghn([graph_for_spec(spec)])
    ghn.eval()
    wide = base.replace(d_model=96, n_heads=2, d_qk=48, d_v=48, d_mlp=384, n_layer=4)
    with torch.no_grad():
        read = _rows_read(ghn, graph_for_spec(wide))
    tables = dict(ghn.named_modules())
    assert {"embed.shape_embed.chan", "encoder.structure.input_dist"} <= set(read)
    for name, rows in read.items():
        trained = set(torch.nonzero(tables[name].trained).flatten().tolist())
        keep = tables[name].keep
        assert rows <= trained | ({keep} if keep is not None else set()), name
    # without the fallback (the reference) the same target reads untrained rows
    for m in ghn.modules():
        if isinstance(m, TrainedEmbedding):
            m.fallback = False
    with torch.no_grad():
        read = _rows_read(ghn, graph_for_spec(wide))
    assert not read["embed.shape_embed.chan"] <= set(
        torch.nonzero(tables["embed.shape_embed.chan"].trained).flatten().tolist())
