"""The quantized weights a load made are kept on disk and read back by the next load of the same files.

Real checkpoints (MindSpore .ckpt written by the model factory), the real quantizer and a real folder: a
second load must give the very same blocks without quantizing, and anything that would make the kept file
wrong (a changed checkpoint, a damaged or half-written file, a cancelled load) must lead back to quantizing.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading

import numpy as np
import pytest

import model_factory as mf
from fixtures import make_executor

from engine.backends.cpu import weight_cache, weights
from engine.errors import Cancelled

PROMPT = [1, 5, 9, 2, 7, 3]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """The cache on, in a folder of this test's own."""
    import engine.paths

    folder = tmp_path / "quantized-weights"
    monkeypatch.setattr(engine.paths, "quantized_weights_dir", lambda: folder)
    monkeypatch.setenv(weight_cache.LIMIT_ENV, "16")
    # these files are MBs: the margin left free (2 GB) must not make them depend on the machine's free disk space
    # (a CI machine near full kept none); the margin itself is tested on its own below
    monkeypatch.setattr(weight_cache, "_FREE_MARGIN", 0)
    return folder


@pytest.fixture
def model_copy(tmp_path):
    """A copy of the one-layer bf16 GQA checkpoint (LLaMA3's vocabulary) this test may touch or change."""
    source, yml, _ = mf.cached_model(mf.ONE_LAYER_GQA)
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(source.read_bytes())
    return ckpt, yml


def _load(model, fmt="int4", **kw):
    return make_executor("cpu", model[0], model[1], weight_format=fmt, **kw)


def _blocks(executor) -> list[np.ndarray]:
    return [getattr(layer, s).data for layer in executor.layers for s in ("wq", "wk", "wv", "wo", "w1", "w2", "w3")] \
        + [executor.lm_head.data]


def _no_quantizing(monkeypatch):
    def refuse(*args):
        raise AssertionError("quantized although the kept weights were there")
    monkeypatch.setattr(weights, "pack_rows", refuse)


def _kept(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("fmt", ["int4", "int8"])
def test_the_second_load_reads_the_first_loads_blocks_without_quantizing(model_copy, cache_dir, monkeypatch, fmt):
    first = _load(model_copy, fmt)
    assert not first.weights_from_cache
    made, logits = [b.copy() for b in _blocks(first)], first.prefill(np.array(PROMPT), 0)
    first.close()
    files = _kept(cache_dir)
    assert len(files) == 1 and files[0].endswith(weight_cache.SUFFIX) and fmt in files[0]

    _no_quantizing(monkeypatch)
    second = _load(model_copy, fmt)
    assert second.weights_from_cache
    assert all(np.array_equal(a, b) for a, b in zip(made, _blocks(second)))
    assert np.array_equal(second.prefill(np.array(PROMPT), 0), logits)
    second.close()
    assert _kept(cache_dir) == files


def test_a_changed_checkpoint_is_quantized_again(model_copy, cache_dir):
    _load(model_copy).close()
    st = os.stat(model_copy[0])
    os.utime(model_copy[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # as a new download of it would
    again = _load(model_copy)
    assert not again.weights_from_cache
    again.close()
    assert len(_kept(cache_dir)) == 2              # the old one goes when the folder's size limit needs it


def test_a_damaged_file_is_deleted_and_the_weights_quantized_again(model_copy, cache_dir, caplog):
    first = _load(model_copy)
    made = [b.copy() for b in _blocks(first)]
    first.close()
    (kept,) = cache_dir.iterdir()
    raw = bytearray(kept.read_bytes())
    raw[len(raw) // 3] ^= 0x10                     # one bit flipped inside the blocks
    kept.write_bytes(bytes(raw))

    with caplog.at_level(logging.WARNING, logger=weight_cache.log.name):   # whatever an earlier test set
        again = _load(model_copy)
    assert all(np.array_equal(a, b) for a, b in zip(made, _blocks(again)))
    again.close()
    assert "does not match its checksum" in caplog.text and _kept(cache_dir) == []
    _load(model_copy).close()                      # the next load makes it anew
    third = _load(model_copy)
    assert third.weights_from_cache
    third.close()


def test_a_half_written_file_is_not_used(model_copy, cache_dir, monkeypatch):
    _load(model_copy).close()
    (kept,) = cache_dir.iterdir()
    with open(kept, "r+b") as f:                   # as if the load had been killed before its index was written
        f.truncate(kept.stat().st_size // 2)
    again = _load(model_copy)
    assert not again.weights_from_cache
    again.close()
    assert _kept(cache_dir) == [kept.name] and kept.stat().st_size > 0


def test_a_cancelled_load_leaves_no_file(model_copy, cache_dir, monkeypatch):
    cancel = threading.Event()
    from engine.backends.registry import ExecutorOptions, get_backend
    from engine.config import load_config
    from engine.weights.validation import open_weights

    cfg, source = load_config(model_copy[1]), open_weights(model_copy[0])
    options = ExecutorOptions(max_seq_len=cfg.seq_length, device="CPU", weight_format="int4")

    def progress(done, total):
        if done > 0:          # after the first matrix: the others are still to come
            cancel.set()
    with pytest.raises(Cancelled):
        get_backend("cpu").executor_class()(cfg, source, options, progress=progress, cancel=cancel)
    source.close()
    assert _kept(cache_dir) == []


def _copy(model, tmp_path, name):
    ckpt = tmp_path / name
    ckpt.write_bytes(model[0].read_bytes())
    return ckpt, model[1]


def test_the_least_recently_loaded_file_goes_first_when_the_folder_is_full(model_copy, cache_dir, tmp_path,
                                                                            monkeypatch):
    first, second = model_copy, _copy(model_copy, tmp_path, "second.ckpt")
    _load(first).close()
    (first_file,) = _kept(cache_dir)
    _load(second).close()
    _load(first).close()                           # loaded again: now the most recently used
    size = (cache_dir / first_file).stat().st_size
    monkeypatch.setenv(weight_cache.LIMIT_ENV, str(2.5 * size / 1e9))    # room for two files, not three
    third = _copy(model_copy, tmp_path, "third.ckpt")
    _load(third).close()
    kept = _kept(cache_dir)
    assert len(kept) == 2 and first_file in kept and any(name.startswith("third-") for name in kept)


def test_weights_bigger_than_the_limit_are_not_kept_and_the_others_stay(model_copy, cache_dir, monkeypatch):
    _load(model_copy, "int4").close()
    (int4,) = _kept(cache_dir)
    monkeypatch.setenv(weight_cache.LIMIT_ENV, str((cache_dir / int4).stat().st_size / 1e9))   # int8 is bigger
    _load(model_copy, "int8").close()
    assert _kept(cache_dir) == [int4]
    again = _load(model_copy, "int4")
    assert again.weights_from_cache
    again.close()


def test_the_loads_own_limit_wins_over_the_environment(model_copy, cache_dir, tmp_path, monkeypatch):
    """The app's Settings pass the limit with the load (``weight_cache_gb``): it decides, whatever the variable says."""
    monkeypatch.setenv(weight_cache.LIMIT_ENV, "0")                     # off, as far as the environment goes
    _load(model_copy, weight_cache_gb=16).close()
    (first,) = _kept(cache_dir)
    monkeypatch.setenv(weight_cache.LIMIT_ENV, "16")
    _load(_copy(model_copy, tmp_path, "second.ckpt"), weight_cache_gb=0).close()    # off: nothing new kept
    assert _kept(cache_dir) == [first]
    again = _load(model_copy, weight_cache_gb=16)
    assert again.weights_from_cache
    again.close()


def test_a_lowered_limit_trims_the_folder_at_once_oldest_first(model_copy, cache_dir, tmp_path):
    _load(model_copy).close()
    (oldest,) = _kept(cache_dir)
    _load(_copy(model_copy, tmp_path, "second.ckpt")).close()
    (newest,) = set(_kept(cache_dir)) - {oldest}
    size = (cache_dir / newest).stat().st_size
    weight_cache.trim(cache_dir, 1.5 * size / 1e9)                          # room for one of the two
    assert _kept(cache_dir) == [newest]
    weight_cache.trim(cache_dir, 0)                                        # "Off": none kept
    assert _kept(cache_dir) == []


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True, "16"])
def test_a_limit_that_is_no_size_is_refused_with_the_setting_named(bad):
    from engine import EngineError, ExecutorOptions

    with pytest.raises(EngineError) as caught:
        ExecutorOptions(weight_cache_gb=bad)
    assert caught.value.code == "weight_cache_invalid" and "quantized weights" in str(caught.value)


def test_nothing_is_kept_that_would_leave_the_disk_under_its_margin(model_copy, cache_dir, monkeypatch, caplog):
    monkeypatch.setattr(weight_cache, "_FREE_MARGIN", shutil.disk_usage(model_copy[0].parent).free)
    with caplog.at_level(logging.INFO, logger=weight_cache.log.name):
        loaded = _load(model_copy)
    assert not loaded.weights_from_cache
    loaded.close()
    assert _kept(cache_dir) == [] and "not kept" in caplog.text and "GB free" in caplog.text


def test_off_keeps_nothing(model_copy, cache_dir, monkeypatch):
    monkeypatch.setenv(weight_cache.LIMIT_ENV, "0")
    _load(model_copy).close()
    assert _kept(cache_dir) == []
