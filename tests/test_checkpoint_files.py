"""Checkpoint files as they come: training extras in a .ckpt, Hugging Face shards, refusals that close the
file at once, executors that own and close their source, and messages that quote file content briefly.

Files are written by MindSpore (``save_checkpoint``) or by the ``safetensors`` package, as the real ones are;
a record MindSpore cannot write (a bogus type name) is appended to a real file by hand.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import threading
import warnings
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

import model_factory as mf
import reference_llama as ref
from engine import CheckpointError, ExecutorOptions, GenerationSettings, ModelSource, TokenizerError, load_engine
from engine.config import load_config
from engine.weights.validation import open_weights, validate_weights
from fixtures import chat_engine, compile_cache_env, error_line, make_executor, run_cli

EOS = 2
PROMPT = [1, 15, 300, 7, 999]


def _json(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _handles(path: Path) -> tuple[list[str], list[str]]:
    """This process's open file descriptors and memory maps of ``path`` (Linux)."""
    real = os.path.realpath(path)
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == real:
                fds.append(fd)
        except OSError:
            pass  # the descriptor listdir itself used, now closed
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        mapped = [line for line in maps if line.rstrip("\n").endswith(real)]
    return fds, mapped


linux_only = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self to see open files and maps")


# -- 1. a .ckpt saved with training extras ----------------------------------

@pytest.fixture(scope="module")
def with_extras(llama2_tiny, tmp_path_factory) -> Path:
    _, _, weights, spec = llama2_tiny
    path = tmp_path_factory.mktemp("extras") / "llama2_epoch3.ckpt"
    mf.write_ckpt(spec, weights, path, append_dict={"epoch_num": 3, "note": "x", "lr": 0.5})
    return path


def _cut_copies(path: Path, folder: Path) -> list[Path]:
    """The file cut inside its last record ('lr'), inside 'note', and in the middle of the weights."""
    data = path.read_bytes()
    cuts = []
    for n, keep in enumerate((len(data) - 1, len(data) - 30, len(data) // 2)):
        cut = folder / f"cut{n}.ckpt"
        cut.write_bytes(data[:keep])
        cuts.append(cut)
    return cuts


def _close_to(got, want):
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()  # float32, another summation order
    assert int(np.argmax(got)) == int(np.argmax(want))


def test_ckpt_with_training_extras_loads_and_answers_like_the_plain_file(with_extras, llama2_tiny, spm_model,
                                                                           tmp_path):
    from engine import check_model_files

    ckpt, yml, weights, spec = llama2_tiny
    summary = check_model_files(ModelSource(version=2, config=yml, tokenizer=spm_model, checkpoint=with_extras))
    assert summary["stored_dtypes"] == ["float16", "float32"] and summary["layers"] == 2
    with open_weights(with_extras) as extras, open_weights(ckpt) as plain:
        assert set(extras.tensors) == set(plain.tensors) | {"epoch_num", "lr"}  # "note" (text) is not a tensor
        for name in plain.tensors:
            assert np.array_equal(extras.float32(name), plain.float32(name)), name
    engine = chat_engine(make_executor("mindspore", with_extras, yml))
    try:
        done = engine.complete_ids(PROMPT, GenerationSettings(greedy=True, repetition_penalty=1.0, max_new_tokens=8))
        assert done.output_ids == ref.answer(weights, spec.hp, PROMPT, 8, stop={EOS})
    finally:
        engine.close()
    for cut in _cut_copies(with_extras, tmp_path):
        with pytest.raises(CheckpointError, match=rf"{cut.name}.*(truncated|corrupt)"):
            open_weights(cut)


def test_cli_runs_a_ckpt_with_training_extras_and_refuses_it_cut_short(with_extras, llama2_tiny, tmp_path,
                                                                        cli_compile_cache):
    _, yml, weights, spec = llama2_tiny
    out = _json(run_cli("run_model.py", "-V", "2", "-C", yml, "-M", with_extras, "--backend", "mindspore",
                        "--prompt-ids", ",".join(map(str, PROMPT)), "--greedy", "--max-new-tokens", "8", "--json",
                        env_extra=compile_cache_env(cli_compile_cache, yml)))
    assert out["output_ids"] == ref.answer(weights, spec.hp, PROMPT, 8, stop={EOS})
    cut = _cut_copies(with_extras, tmp_path)[0]
    error_line(run_cli("run_model.py", "-V", "2", "-C", yml, "-M", cut, "--prompt-ids", "1,2"), cut.name, "truncated")


# -- 2. Hugging Face shards ---------------------------------------------------

_HF_TOP = {"model.tok_embeddings.embedding_weight": "model.embed_tokens.weight",
           "model.norm_out.weight": "model.norm.weight", "lm_head.weight": "lm_head.weight"}
_HF_LAYER = {"attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj",
             "attention.wv": "self_attn.v_proj", "attention.wo": "self_attn.o_proj",
             "feed_forward.w1": "mlp.gate_proj", "feed_forward.w2": "mlp.down_proj",
             "feed_forward.w3": "mlp.up_proj", "attention_norm": "input_layernorm",
             "ffn_norm": "post_attention_layernorm"}
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
INDEX = "model.safetensors.index.json"


def hf_name(ours: str) -> str:
    if ours in _HF_TOP:
        return _HF_TOP[ours]
    for mine, theirs in _HF_LAYER.items():
        if f".{mine}." in ours:
            return ours.replace(f".{mine}.", f".{theirs}.")
    raise KeyError(ours)


def write_hf_shards(folder: Path, weights: dict, spec: mf.TinySpec, *, skip_in_shard: str | None = None) -> Path:
    """The model as HF ships it: two shards, their index, and the old exports' rotary inv_freq buffers."""
    st = pytest.importorskip("safetensors.numpy")
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {hf_name(n): (a.astype(np.float16) if a.ndim == 2 else a) for n, a in weights.items()}
    hd = spec.dim // spec.heads
    for i in range(spec.layers):
        tensors[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = \
            (1.0 / spec.theta ** (np.arange(0, hd, 2) / hd)).astype(np.float32)
    shard_of = {n: SHARDS[0] if n.startswith(("model.embed_tokens.", "model.layers.0.")) else SHARDS[1]
                for n in tensors}
    for shard in SHARDS:
        st.save_file({n: a for n, a in tensors.items() if shard_of[n] == shard and n != skip_in_shard},
                     str(folder / shard), metadata={"format": "pt"})
    index = {"metadata": {"total_size": sum(a.nbytes for a in tensors.values())},
             "weight_map": dict(sorted(shard_of.items()))}
    (folder / INDEX).write_text(json.dumps(index, indent=2), encoding="utf-8")
    return folder / INDEX


@pytest.fixture(scope="module")
def hf_index(llama2_tiny, tmp_path_factory) -> Path:
    _, _, weights, spec = llama2_tiny
    return write_hf_shards(tmp_path_factory.mktemp("hf") / "Llama-2-tiny-hf", weights, spec)


def test_hf_shards_hold_the_same_weights_as_the_ckpt_by_index_or_folder(hf_index, llama2_tiny):
    ckpt, yml, _, _ = llama2_tiny
    with open_weights(ckpt) as plain:
        for given in (hf_index, hf_index.parent):
            with open_weights(given) as shards:
                validate_weights(shards, load_config(yml))
                assert {f.path.name for f in shards.files} == set(SHARDS)
                assert set(shards.tensors) == set(plain.tensors) | {
                    f"model.layers.{i}.self_attn.rotary_emb.inv_freq" for i in range(2)}
                for name in plain.tensors:
                    assert np.array_equal(shards.float32(name), plain.float32(name)), name


def test_hf_shards_compute_like_the_reference(hf_index, llama2_tiny):
    _, yml, weights, spec = llama2_tiny
    executor = make_executor("mindspore", hf_index, yml)
    try:
        _close_to(executor.prefill(PROMPT, 0), ref.forward(weights, spec.hp, PROMPT)[-1])
    finally:
        executor.close()


def test_cli_runs_hf_shards_given_as_their_folder(hf_index, llama2_tiny, cli_compile_cache):
    _, yml, weights, spec = llama2_tiny
    out = _json(run_cli("run_model.py", "-V", "2", "-C", yml, "-M", hf_index.parent, "--backend", "mindspore",
                        "--prompt-ids", ",".join(map(str, PROMPT)), "--greedy", "--max-new-tokens", "8", "--json",
                        env_extra=compile_cache_env(cli_compile_cache, yml)))
    assert out["output_ids"] == ref.answer(weights, spec.hp, PROMPT, 8, stop={EOS})
    assert out["model"]["checkpoint"] == str(hf_index.parent)


def test_broken_hf_shards_are_refused_naming_the_file(hf_index, llama2_tiny, tmp_path):
    _, yml, weights, spec = llama2_tiny
    missing = shutil.copytree(hf_index.parent, tmp_path / "missing_shard")
    (missing / SHARDS[1]).unlink()
    with pytest.raises(CheckpointError, match=rf"{INDEX}.*missing.*{SHARDS[1]}"):
        open_weights(missing / INDEX)

    lacking = write_hf_shards(tmp_path / "lacking", weights, spec, skip_in_shard="model.norm.weight")
    with pytest.raises(CheckpointError, match=rf"{SHARDS[1]} lacks 1 tensors.*model\.norm\.weight") as refused:
        open_weights(lacking)
    assert refused.value.path == lacking.parent / SHARDS[1]

    for n, text in enumerate(("{not json", json.dumps({"metadata": {}}), json.dumps({"weight_map": {}}))):
        bad = shutil.copytree(hf_index.parent, tmp_path / f"bad_index{n}")
        (bad / INDEX).write_text(text, encoding="utf-8")
        with pytest.raises(CheckpointError, match=rf"{INDEX} is not a valid safetensors index"):
            open_weights(bad / INDEX)

    error_line(run_cli("run_model.py", "-V", "2", "-C", yml, "-M", missing, "--prompt-ids", "1,2"),
             INDEX, SHARDS[1])


@pytest.mark.parametrize("shard", ["../outside/{}", "sub/{}", "sub\\{}", "C:{}", "{outside}"])
def test_an_index_naming_a_shard_outside_its_folder_is_refused(hf_index, tmp_path, shard):
    """Each of these names a real, valid shard: only where it is makes it wrong."""
    index = json.loads(hf_index.read_text(encoding="utf-8"))
    folder = shutil.copytree(hf_index.parent, tmp_path / "model" / "hf")
    elsewhere = {"../outside/{}": tmp_path / "model" / "outside", "sub/{}": folder / "sub",
                 "sub\\{}": folder / "sub", "C:{}": folder, "{outside}": tmp_path / "model" / "outside"}[shard]
    elsewhere.mkdir(exist_ok=True)
    if elsewhere != folder:
        shutil.copy(folder / SHARDS[1], elsewhere / SHARDS[1])
    name = shard.format(SHARDS[1], outside=str(elsewhere / SHARDS[1]))
    index["weight_map"] = {t: (name if f == SHARDS[1] else f) for t, f in index["weight_map"].items()}
    (folder / INDEX).write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(CheckpointError, match="which is not a file name in its own folder") as refused:
        open_weights(folder / INDEX)
    assert refused.value.path == folder / INDEX and "Download the index again" in str(refused.value)


# -- 12/25. a refusal closes the file at once ---------------------------------

@pytest.fixture
def ckpt_copy(llama2_tiny, tmp_path) -> Path:
    """A private copy, so handles held by other tests' engines cannot be mistaken for a leak."""
    return Path(shutil.copy(llama2_tiny[0], tmp_path / "private.ckpt"))


@linux_only
def test_failed_validation_closes_the_map_and_the_file(ckpt_copy, llama2_tiny, tmp_path):
    wrong = load_config(mf.write_yaml(llama2_tiny[3], tmp_path / "three_layers.yaml", num_layers=3))
    source = open_weights(ckpt_copy)
    assert _handles(ckpt_copy) != ([], [])
    with pytest.raises(CheckpointError, match="does not match"):
        validate_weights(source, wrong)
    assert source.closed and _handles(ckpt_copy) == ([], [])


@linux_only
def test_failed_validation_of_hf_shards_closes_every_shard(hf_index, tmp_path):
    wrong = load_config(mf.write_yaml(mf.LLAMA2_TINY, tmp_path / "three_layers.yaml", num_layers=3))
    source = open_weights(hf_index)
    with pytest.raises(CheckpointError, match="does not match"):
        validate_weights(source, wrong)
    assert source.closed
    for shard in SHARDS:
        assert _handles(hf_index.parent / shard) == ([], []), shard


@linux_only
@pytest.mark.parametrize("problem", ["llama3_file", "vocabulary_too_big"])
def test_tokenizer_refusal_leaves_no_handle_on_the_checkpoint(problem, ckpt_copy, llama2_tiny, tiktoken_file,
                                                              spm_models, tmp_path):
    yml = llama2_tiny[1]
    tokenizer = tiktoken_file
    if problem == "vocabulary_too_big":  # a 400-token model cannot take the 1000-piece tokenizer
        spec = mf.TinySpec("vocab400", dim=32, layers=1, heads=2, kv_heads=2, vocab=400, ffn=64, theta=1e4,
                           dtype="float16")
        mf.write_ckpt(spec, mf.make_weights(spec), ckpt_copy)
        yml, tokenizer = mf.write_yaml(spec, tmp_path / "vocab400.yaml"), spm_models[1000]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TokenizerError) as refused:
            load_engine(ModelSource(version=2, config=yml, tokenizer=tokenizer, checkpoint=ckpt_copy),
                        ExecutorOptions(backend="mindspore"))
        assert _handles(ckpt_copy) == ([], [])  # closed at once, while the error is still held
        del refused
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


# -- 16. the executor owns its source -----------------------------------------

@linux_only
def test_the_executor_closes_its_weight_source(ckpt_copy, llama2_tiny):
    """What it computes after that, from its own copy of the weights, the extras and shards tests check."""
    from engine import Cancelled
    from engine.backends.registry import get_backend

    cfg = load_config(llama2_tiny[1])
    executor_class = get_backend("mindspore").executor_class()
    source = open_weights(ckpt_copy)
    validate_weights(source, cfg)
    executor = executor_class(cfg, source, ExecutorOptions(max_seq_len=cfg.seq_length, device="CPU"))
    assert source.closed and _handles(ckpt_copy) == ([], [])
    executor.close()

    source = open_weights(ckpt_copy)  # an executor that never finishes building closes it too
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        executor_class(cfg, source, ExecutorOptions(max_seq_len=cfg.seq_length, device="CPU"), cancel=stop)
    assert source.closed and _handles(ckpt_copy) == ([], [])


@linux_only
def test_shards_refuse_to_close_under_a_live_view(hf_index):
    source = open_weights(hf_index)
    view = source.raw("model.layers.1.attention.wq.weight")  # in the second shard
    assert not view.flags.owndata
    with pytest.raises(BufferError):
        source.close()
    del view
    source.close()
    assert source.closed and all(_handles(hf_index.parent / s) == ([], []) for s in SHARDS)


# -- 22. file content in messages is quoted short and escaped -----------------

def _is_quoted_briefly(message: str) -> None:
    assert len(message) < 1000, len(message)
    assert "\n" not in message and "\x1b" not in message


def test_a_megabyte_long_tensor_name_is_quoted_briefly(llama2_tiny, tmp_path):
    tag = "model.evil\n\x1b[2J" + "A" * 1_000_000
    one, two = tmp_path / "one.ckpt", tmp_path / "two.ckpt"
    ms.save_checkpoint([{"name": tag, "data": ms.Tensor(np.ones(4, np.float16))},
                        {"name": "other", "data": ms.Tensor(np.ones(4, np.float16))}], str(one))
    ms.save_checkpoint([{"name": tag, "data": ms.Tensor(np.ones(4, np.float16))}], str(two))
    bad = tmp_path / "long_name.ckpt"
    bad.write_bytes(llama2_tiny[0].read_bytes() + one.read_bytes() + two.read_bytes())  # the name twice
    with pytest.raises(CheckpointError, match="appears twice") as refused:
        open_weights(bad)
    _is_quoted_briefly(str(refused.value))
    assert r"model.evil\n\x1b[2J" in str(refused.value)  # escaped, so the user can still read it


def _ckpt_record(tag: str, dims: list[int], type_name: str, content: bytes) -> bytes:
    """One ``Checkpoint.value`` record, protobuf-encoded by hand (MindSpore writes no bogus type names)."""
    def varint(n):
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    def field(number, payload):
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    tensor = b"".join(varint(1 << 3) + varint(d) for d in dims) + field(2, type_name.encode()) + field(3, content)
    return field(1, field(1, tag.encode()) + field(2, tensor))


def test_a_megabyte_long_type_name_is_quoted_briefly(llama2_tiny, tmp_path):
    ckpt, yml, weights, spec = llama2_tiny
    bad = tmp_path / "bogus_type.ckpt"
    mf.write_ckpt(spec, {n: a for n, a in weights.items() if n != "model.norm_out.weight"}, bad)
    norm = weights["model.norm_out.weight"]
    with open(bad, "ab") as f:
        f.write(_ckpt_record("model.norm_out.weight", [spec.dim], "Float32\n\x1b[2J" + "Z" * 1_000_000,
                             norm.tobytes()))
    with pytest.raises(CheckpointError) as refused:
        validate_weights(open_weights(bad), load_config(yml))
    assert "model.norm_out.weight" in str(refused.value)
    _is_quoted_briefly(str(refused.value))
    _is_quoted_briefly(error_line(run_cli("run_model.py", "-V", "2", "-C", yml, "-M", bad, "--prompt-ids", "1,2"),
                                bad.name))

    header = json.dumps({"w": {"dtype": "F16\n\x1b[2J" + "Z" * 1_000_000, "shape": [2], "data_offsets": [0, 4]}})
    blob = header.encode() + b" " * (-len(header) % 8)
    st = tmp_path / "bogus_type.safetensors"
    st.write_bytes(len(blob).to_bytes(8, "little") + blob + b"\0" * 4)
    with pytest.raises(CheckpointError, match="unsupported dtype") as refused:
        open_weights(st)
    _is_quoted_briefly(str(refused.value))
