"""The ArchitectureDataModule: per-rank streams, online draws, archs.json round trip."""

from __future__ import annotations

import json

import pytest

from logah.config import get_preset
from logah.config.arch import ArchDataConfig

GPT = get_preset("gpt2-tiny").replace(n_ctx=32, vocab_size=101, tie_embeddings=False)


class _NoTask:
    """Stands in for the task DataModule (these tests never draw task batches)."""

    trainer = None

    def prepare_data(self):
        pass

    def setup(self, stage=None):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _dm(tmp_path=None, resume=True, **kw):
    from logah.data.arch import ArchitectureDataModule

    cfg = ArchDataConfig(num_train=kw.pop("num_train", 40), num_heldout=3, num_beyond=2, **kw)
    return ArchitectureDataModule(cfg, _NoTask(), GPT, seed=1, run_dir=tmp_path, resume=resume)


def _stream(dm, rank, world):
    from logah.data.arch import ArchStream

    pool = None if dm.cfg.online else dm.train_specs
    s = ArchStream(dm.space, pool, dm.heldout_keys, dm.cfg.meta_batch, dm.seed, dm.cache)
    s.set_rank(rank, world)
    return s


def test_ranks_draw_disjoint_entries_of_the_fixed_set_and_cover_their_shard():
    dm = _dm(meta_batch=2)
    ids = {id(s): i for i, s in enumerate(dm.train_specs)}
    seen = []
    for rank in (0, 1):
        stream = _stream(dm, rank, 2)
        drawn = [ids[id(s)] for k in range(10) for s in stream.specs_at(k)]  # one pass: 20 slots
        assert sorted(drawn) == list(range(rank, 40, 2))  # the rank's shard, each entry once
        seen.append(drawn)
    assert not set(seen[0]) & set(seen[1])
    # pure in (seed, rank, index): a new stream gives the same sequence, a later pass another order
    again = _stream(dm, 1, 2)
    assert [ids[id(s)] for s in again.specs_at(3)] == seen[1][6:8]
    assert [ids[id(s)] for k in range(10, 20) for s in again.specs_at(k)] != seen[1]


def test_online_streams_differ_per_rank_avoid_heldout_and_resume_at_an_index():
    dm = _dm(online=True, meta_batch=2)
    assert dm.train_specs == []
    a, b = _stream(dm, 0, 2), _stream(dm, 1, 2)
    keys_a = [s.key() for k in range(30) for s in a.specs_at(k)]
    keys_b = [s.key() for k in range(30) for s in b.specs_at(k)]
    assert keys_a != keys_b and not set(keys_a) & dm.heldout_keys
    a.start = lambda: 7  # an epoch starting after 7 batches continues the same sequence
    first = next(iter(a))
    assert [s.key() for s in first.specs] == keys_a[14:16]
    assert first.graphs.num_graphs == 2 and first.kinds[0] in ("small", "medium", "large")
    assert a.cache(first.specs[0]) is a.cache(first.specs[0])  # graphs are cached


def test_archs_json_round_trip_resume_and_stale_files(tmp_path):
    from logah.data import DataFormatError
    from logah.data.arch import read_archs

    dm = _dm(tmp_path)
    dm.prepare_data()
    path = tmp_path / "archs.json"
    text = path.read_text()
    assert len(text) < 20_000  # distinct specs once + indices: small
    train, held, kinds = read_archs(path)
    assert [s.key() for s in train] == [s.key() for s in dm.train_specs]
    assert [s.key() for s in held] == [s.key() for s in dm.heldout]
    assert kinds == ["in_range"] * 3 + ["deeper", "wider"]
    # a resumed run reads the file, even if drawing now would differ
    doc = json.loads(text)
    doc["train"] = doc["train"][::-1]
    path.write_text(json.dumps(doc))
    resumed = _dm(tmp_path)
    assert [s.key() for s in resumed.train_specs] == [s.key() for s in dm.train_specs][::-1]
    fresh = _dm(tmp_path, resume=False)  # a new run redraws and overwrites it
    fresh.prepare_data()
    assert read_archs(path)[0] == dm.train_specs
    with pytest.raises(DataFormatError, match="archs.json: drawn for another archs"):
        _dm(tmp_path, num_train=10)
    path.write_text("{")
    with pytest.raises(DataFormatError, match="archs.json: not a valid architectures file"):
        _dm(tmp_path)
