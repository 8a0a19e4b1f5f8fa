"""run_model.py's conversation state file (--prompt-cache), its chat/base template choice and its dropped-turn note."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import reference_llama as ref
from engine.text.tokenizers import load_tokenizer
from fixtures import ROOT, run_cli


def _json(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_prompt_cache_is_saved_after_the_answer_and_read_back_by_the_next_run(llama2_tiny, tmp_path):
    ckpt, yml, weights, spec = llama2_tiny
    state = tmp_path / "状态" / "chat.kvstate"
    first = [1] + [(i * 37) % 900 + 3 for i in range(60)]
    base = ["-V", "2", "-C", yml, "-M", ckpt, "--greedy", "--max-new-tokens", "6", "--json", "--prompt-cache", state]
    one = _json(run_cli("run_model.py", *base, "--prompt-ids", ",".join(map(str, first))))
    assert one["stats"]["cached_tokens"] == 0 and one["stats"]["prefilled_tokens"] == len(first)
    assert state.is_file()
    second = first + one["output_ids"] + [15, 300, 7]
    two = _json(run_cli("run_model.py", *base, "--prompt-ids", ",".join(map(str, second))))
    # the first run's prompt and answer came from the file; only the rest was computed
    assert two["stats"]["cached_tokens"] == two["stats"]["restored_tokens"] >= len(first) + len(one["output_ids"]) - 1
    assert two["stats"]["prompt_tokens"] == two["stats"]["cached_tokens"] + two["stats"]["prefilled_tokens"]
    assert two["output_ids"] == ref.answer(weights, spec.hp, second, 6, stop={spec.eos})


def test_a_base_checkpoint_chats_through_a_transcript_unless_told_otherwise(llama2_tiny, spm_model, tmp_path):
    """A file named like the manifest's MindFormers LLaMA2 (a base model) gets the plain transcript by itself."""
    ckpt, yml, _, _ = llama2_tiny
    base_ckpt = tmp_path / "llama2_7b.ckpt"
    os.link(ckpt, base_ckpt)
    args = ["-V", "2", "-C", yml, "-M", base_ckpt, "-F", spm_model, "--prompt", "hello there", "--greedy",
            "--max-new-tokens", "4", "--json"]
    auto = run_cli("run_model.py", *args)
    out = _json(auto)
    tok = load_tokenizer(spm_model, 2)
    assert out["model"]["kind"] == "base" and out["model"]["template"] == "base"
    assert tok.decode(out["prompt_ids"]) == "User: hello there\nAssistant:"
    assert "base model" in auto.stderr and "llama2-hf" in auto.stderr       # the note says why and what to use
    chat = _json(run_cli("run_model.py", *args, "--template", "llama2"))
    assert chat["model"]["kind"] == "chat" and chat["prompt_ids"] == tok.encode("[INST] hello there [/INST]", bos=True)


def test_the_interactive_chat_says_when_earlier_turns_are_left_out(llama2_tiny, spm_model):
    ckpt, yml, _, _ = llama2_tiny
    lines = [f"tell me about the quick brown fox number {i} today" for i in range(8)]
    result = run_cli("run_model.py", "-V", "2", "-C", yml, "-M", ckpt, "-F", spm_model, "--template", "llama2",
                     "--max-new-tokens", "8", "--max-seq-len", "160", "--greedy", stdin="\n".join(lines) + "\n/exit\n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "earlier messages left out to fit the context]" in result.stderr
    assert "from the cache" in result.stderr


def test_checkpoint_download_list_says_which_models_are_chat_models():
    listing = subprocess.run([sys.executable, "-m", "checkpoint_download", "list"], cwd=ROOT, capture_output=True,
                             text=True, encoding="utf-8", timeout=120)
    assert listing.returncode == 0, listing.stderr
    text = listing.stdout
    for name, kind in (("llama2", "base model"), ("llama3", "base model"), ("llama2-hf", "chat model"),
                       ("llama3-hf", "chat model")):
        start = text.index(f"\n{name}: " if not text.startswith(f"{name}: ") else f"{name}: ")
        assert kind in text[start:text.index("folder:", start)], (name, text)
