"""The zero-copy readers against MindSpore's own loader and against the values written."""

from __future__ import annotations

import shutil

import mindspore as ms
import numpy as np
import pytest

from engine.errors import CheckpointError
from engine.weights.ckpt_reader import CkptReader
from engine.weights.safetensors_reader import SafetensorsReader, write_safetensors
from engine.weights.validation import open_weights


def test_every_tensor_is_bit_identical_to_mindspore_load_checkpoint(llama2_tiny):
    ckpt = llama2_tiny[0]
    theirs = ms.load_checkpoint(str(ckpt))
    with CkptReader(ckpt) as reader:
        assert set(reader.tensors) == set(theirs)
        for name, param in theirs.items():
            mine = reader.raw(name)
            assert mine.dtype == param.asnumpy().dtype and mine.shape == param.shape
            assert mine.tobytes() == param.asnumpy().tobytes(), name
            del mine  # a view into the map: closing refuses while one is alive


def test_unsplit_tensors_are_views_into_the_file(llama2_tiny):
    with CkptReader(llama2_tiny[0]) as reader:
        view = reader.raw("model.layers.0.attention.wq.weight")
        assert not view.flags.owndata and not view.flags.writeable
        with pytest.raises(BufferError):
            reader.close()  # never leave a view pointing at an unmapped file
        del view
    assert reader.closed


def test_split_bf16_records_are_joined(llama3_chunked):
    ckpt, _, weights, spec = llama3_chunked
    with CkptReader(ckpt) as reader:
        emb = reader.tensors["model.tok_embeddings.embedding_weight"]
        assert emb.dtype == "bfloat16" and len(emb.chunks) >= 2  # > 512 MiB: MindSpore split it
        assert len(reader.tensors["lm_head.weight"].chunks) >= 2
        got = reader.float32("model.tok_embeddings.embedding_weight")
        np.testing.assert_array_equal(got, weights["model.tok_embeddings.embedding_weight"])
        np.testing.assert_array_equal(reader.float32("model.layers.1.attention.wk.weight"),
                                      weights["model.layers.1.attention.wk.weight"])


def test_bf16_matches_mindspore_cast(tmp_path):
    values = np.array([[1.0, -2.5, 3.140625, 1e-3], [65504.0, -0.0, 7.0, 0.5]], np.float32)
    path = tmp_path / "bf16.ckpt"
    ms.save_checkpoint([{"name": "w", "data": ms.Tensor(values).astype(ms.bfloat16)}], str(path))
    with CkptReader(path) as reader:
        want = ms.Tensor(values).astype(ms.bfloat16).astype(ms.float32).asnumpy()
        np.testing.assert_array_equal(reader.float32("w"), want)


def test_crc_trailer_is_accepted(tmp_path):
    path = tmp_path / "crc.ckpt"
    ms.save_checkpoint([{"name": "a", "data": ms.Tensor(np.arange(6, dtype=np.float16).reshape(2, 3))}],
                       str(path), crc_check=True)
    with CkptReader(path) as reader:
        np.testing.assert_array_equal(reader.raw("a"), np.arange(6, dtype=np.float16).reshape(2, 3))


@pytest.mark.parametrize("keep", [0.999, 0.5, 0.01])
def test_truncated_checkpoint_is_refused_with_the_file_name(llama2_tiny, tmp_path, keep):
    data = llama2_tiny[0].read_bytes()
    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated.ckpt.*(truncated|corrupt)"):
        CkptReader(bad)


def test_garbage_and_empty_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="garbage.ckpt"):
        CkptReader(garbage)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        CkptReader(empty)
    with pytest.raises(CheckpointError, match="not found"):
        open_weights(tmp_path / "missing.ckpt")


def test_non_adjacent_duplicate_record_is_refused(tmp_path):
    """MindSpore's loader segfaults on this; we must say what is wrong instead."""
    one = tmp_path / "one.ckpt"
    ms.save_checkpoint([{"name": "a", "data": ms.Tensor(np.ones(4, np.float32))},
                        {"name": "b", "data": ms.Tensor(np.ones(4, np.float32))}], str(one))
    single = tmp_path / "a.ckpt"
    ms.save_checkpoint([{"name": "a", "data": ms.Tensor(np.ones(4, np.float32))}], str(single))
    dup = tmp_path / "dup.ckpt"
    dup.write_bytes(one.read_bytes() + single.read_bytes())
    with pytest.raises(CheckpointError, match="appears twice"):
        CkptReader(dup)


def test_safetensors_with_hf_names_map_to_ours(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    q = np.arange(12, dtype=np.float16).reshape(3, 4)
    path = tmp_path / "hf.safetensors"
    safetensors_numpy.save_file({"model.embed_tokens.weight": q, "model.layers.0.self_attn.q_proj.weight": q,
                                 "model.layers.3.mlp.gate_proj.weight": q, "model.norm.weight": q[0]}, str(path))
    with SafetensorsReader(path) as reader:
        assert set(reader.tensors) == {"model.tok_embeddings.embedding_weight", "model.layers.0.attention.wq.weight",
                                       "model.layers.3.feed_forward.w1.weight", "model.norm_out.weight"}
        np.testing.assert_array_equal(reader.raw("model.layers.0.attention.wq.weight"), q)


def test_our_safetensors_writer_is_readable_by_the_safetensors_package(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    arrays = {"x": np.linspace(0, 1, 10, dtype=np.float32).reshape(2, 5), "y": np.ones(3, np.float16)}
    write_safetensors(tmp_path / "ours.safetensors", arrays)
    loaded = safetensors_numpy.load_file(str(tmp_path / "ours.safetensors"))
    for name, value in arrays.items():
        np.testing.assert_array_equal(loaded[name], value)


def test_truncated_safetensors_is_refused(tmp_path):
    write_safetensors(tmp_path / "w.safetensors", {"x": np.ones((64, 64), np.float32)})
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        SafetensorsReader(tmp_path / "cut.safetensors")


def test_read_only_checkpoint_can_be_read(llama2_tiny, tmp_path):
    """save_checkpoint leaves files mode 0400; we only ever open for reading."""
    copy = tmp_path / "ro.ckpt"
    shutil.copy(llama2_tiny[0], copy)
    copy.chmod(0o400)
    with CkptReader(copy) as reader:
        assert "lm_head.weight" in reader.tensors
