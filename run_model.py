"""Chat with LLaMA2 / LLaMA3 MindSpore checkpoints (or the built-in model) from a terminal.

    python run_model.py -V 2 -C configs/predict_llama2_7b.yaml -F tokenizer.model -M llama2_7b.ckpt
    python run_model.py --builtin --prompt "What is the capital of France?" --greedy --json

Without a checkpoint it runs the small built-in model (and says so), so the
program works end to end offline. Errors are printed as one message, exit code 2.
``--serve`` answers other programs through an OpenAI-compatible HTTP API instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from cli_support import model_source, report, utf8_stdio
from engine import EngineError, ExecutorOptions, GenerationSettings, backend_names, load_engine, verify_checkpoint
from engine.paths import default_model_files
from engine.text.chat_template import TEMPLATE_CHOICES


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Chat with a local LLaMA2/LLaMA3 model on MindSpore.")
    p.add_argument("-V", "--version", type=int, choices=(2, 3), default=2, help="LLaMA version (2 or 3)")
    p.add_argument("-C", "--config", help="MindFormers yaml (default: configs/predict_llama{V}_*.yaml)")
    p.add_argument("-F", "--tokenizer", help="tokenizer.model (default: <models folder>/llama{V}/)")
    p.add_argument("-M", "--model", help="checkpoint .ckpt or .safetensors (default: <models folder>/llama{V}/)")
    p.add_argument("--fast", action="store_true", help="LLaMA2: use the fast (HF tokenizers) tokenizer")
    p.add_argument("--builtin", action="store_true", help="use the built-in SmolLM2-135M-Instruct model")
    p.add_argument("--prompt", help="answer this one prompt and exit")
    p.add_argument("--prompt-ids", help="comma-separated token ids to continue (raw), e.g. 1,15043,3186")
    p.add_argument("--system", help="system prompt for chat")
    p.add_argument("--raw", action="store_true", help="no chat template: continue the text as is")
    p.add_argument("--template", choices=TEMPLATE_CHOICES, default="auto",
                   help="chat format: auto (the model's own: base models get a plain User:/Assistant: transcript), "
                        "llama2, llama3, chatml, or base")
    p.add_argument("--prompt-cache", metavar="FILE",
                   help="conversation state file: read back when it matches the prompt, updated after the answer")
    p.add_argument("--no-context-shift", action="store_true",
                   help="when old turns are dropped, recompute the kept ones instead of moving their cached rows")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--greedy", action="store_true", help="always pick the most likely token")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--repetition-penalty", type=float,
                   help="penalise repeated tokens (default 1.1 when sampling, 1.0 with --greedy)")
    p.add_argument("--seed", type=int)
    p.add_argument("--lookup", choices=("auto", "on", "off"), default="auto",
                   help="guess the next tokens from the conversation and check them in one step: faster where "
                        "answers repeat their input, same answers (default auto: only while it pays; with --serve, "
                        "for requests that do not choose)")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--max-seq-len", type=int, help="context length to allocate (default: the config's)")
    p.add_argument("--backend", default="auto", metavar="NAME",
                   help=f"what runs the model: auto (default), {', '.join(backend_names())}")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"),
                   help="auto: a GPU when MindSpore can use one, else the CPU")
    p.add_argument("--quantize", choices=("none", "int8", "int4"),
                   help="int8: 8-bit weights in blocks of 32 (half the memory of fp16/bf16; cpu backend); "
                        "int4: 4-bit blocks (under a third: LLaMA3-8b on an 8 GB PC); none: as stored (the "
                        "default, except for the built-in model, which runs from its own 4-bit blocks)")
    p.add_argument("--threads", type=int, help="compute threads (default: one per physical core)")
    p.add_argument("--kv-cache", choices=("float16", "float32"), default="float16",
                   help="KV cache element type (cpu backend): float16 halves its memory (default)")
    p.add_argument("--verify", action="store_true",
                   help="read every tensor of the checkpoint, report any holding NaN/Inf, and exit")
    p.add_argument("--json", action="store_true", help="print one JSON object (last line of stdout)")
    p.add_argument("--serve", action="store_true", help="serve the model with an OpenAI-compatible HTTP API")
    p.add_argument("--host", default="127.0.0.1",
                   help="--serve: address to listen on (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=int, default=8080, help="--serve: port (default 8080)")
    p.add_argument("--api-key", default=os.environ.get("LLAMA_DESK_API_KEY") or None,
                   help="--serve: require 'Authorization: Bearer KEY' (default: $LLAMA_DESK_API_KEY)")
    p.add_argument("--parallel", type=int, metavar="N",
                   help="--serve: answer up to N requests at once, their next tokens computed together in one pass "
                        "over the weights (each with its own KV cache: N times its memory). Default 2 on the cpu "
                        "backend; other backends answer one at a time (1)")
    p.add_argument("--max-waiting", type=int, default=8,
                   help="--serve: requests that may wait for the model before others get 429 (default 8)")
    return p.parse_args(argv)


_last_shown: dict[str, int] = {}


def _progress(stage: str, done: int, total: int) -> None:
    """One line per stage, rewritten in place, only when the percentage moves."""
    percent = 100 * done // total if total else 100
    if _last_shown.get(stage) == percent:
        return
    _last_shown[stage] = percent
    end = "\n" if percent >= 100 else ""
    print(f"\r{stage}: {percent:3d}%", end=end, file=sys.stderr, flush=True)


def _parse_ids(text: str) -> list[int]:
    items = text.replace(" ", "").split(",")
    if not all(item.lstrip("-").isdigit() for item in items):
        raise EngineError(f"--prompt-ids must be comma-separated whole numbers like 1,15043,3186; got {text[:60]!r}")
    return [int(x) for x in items]


def _load(args):
    use_builtin = args.builtin
    if not use_builtin and not args.model:
        default_ckpt = default_model_files(args.version)["checkpoint"]
        if not default_ckpt.is_file():
            print(f"No LLaMA{args.version} checkpoint at {default_ckpt}; running the built-in "
                  f"SmolLM2-135M-Instruct model instead. To get LLaMA{args.version}, run "
                  f"{default_model_files(args.version)['download_script']} or pass -M.", file=sys.stderr)
            use_builtin = True
    if args.fast and args.version == 3 and not use_builtin:
        print("Note: LLaMA3's tokenizer is already the fast (tiktoken) kind; --fast changes nothing.",
              file=sys.stderr)
    need_tokenizer = not args.prompt_ids or bool(args.tokenizer)
    if args.prompt_ids and not args.tokenizer and not use_builtin:
        need_tokenizer = default_model_files(args.version)["tokenizer"].is_file()
    weight_format = {"int8": "int8", "int4": "int4", "none": "stored"}.get(args.quantize, "auto")
    options = ExecutorOptions(backend=args.backend, device=args.device, weight_format=weight_format,
                              threads=args.threads, max_seq_len=args.max_seq_len, kv_cache=args.kv_cache,
                              parallel=(args.parallel or 2) if args.serve else 1)
    engine = load_engine(model_source(args, builtin=use_builtin, need_tokenizer=need_tokenizer), options,
                         progress=_progress)
    engine.context_shift = not args.no_context_shift
    for note in engine.info.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.prompt_cache and not engine.can_save_state:
        print(f"note: --prompt-cache is not used: the {engine.info.executor} backend cannot save its KV cache.",
              file=sys.stderr)
    return engine


def _settings(args) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=args.max_new_tokens, greedy=args.greedy,
                              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              repetition_penalty=(args.repetition_penalty if args.repetition_penalty is not None
                                                  else 1.0 if args.greedy else 1.1),
                              seed=args.seed,
                              stop_strings=tuple(args.stop), lookup=args.lookup)


def _stream(text_only: bool):
    def on_token(token: int, text: str) -> None:
        if text_only and text:
            print(text, end="", flush=True)
    return on_token


def _stats_line(completion) -> str:
    s = completion.stats
    reused = f", {s.cached_tokens} from the cache" if s.cached_tokens else ""
    guesses = f", lookup kept {s.accepted_tokens} of {s.drafted_tokens} guesses" if s.drafted_tokens else ""
    return (f"[{s.generated_tokens} tokens, {s.decode_tokens_per_s:.1f} tok/s{guesses}, first token after "
            f"{s.ttft_s:.2f} s, prompt {s.prompt_tokens} tokens{reused}, {s.prefilled_tokens} computed at "
            f"{s.prefill_tokens_per_s:.1f} tok/s]")


def _left_out_line(completion) -> str | None:
    n = completion.dropped_messages
    if not n:
        return None
    return f"[{n} earlier message{'s' if n != 1 else ''} left out to fit the context]"


def _state(args) -> dict:
    return {"state_file": args.prompt_cache} if args.prompt_cache else {}


def run_once(engine, args) -> int:
    settings = _settings(args)
    messages = []
    if args.prompt_ids:
        completion = engine.complete_ids(_parse_ids(args.prompt_ids), settings, _stream(not args.json),
                                         **_state(args))
    elif args.raw:
        completion = engine.complete_text(args.prompt, settings, _stream(not args.json), **_state(args))
    else:
        if args.system:
            messages.append({"role": "system", "content": args.system})
        messages.append({"role": "user", "content": args.prompt})
        completion = engine.chat(messages, settings, _stream(not args.json), **_state(args))
    if args.json:
        result = {"model": engine.info.as_dict(), "prompt_ids": completion.prompt_ids,
                  "output_ids": completion.output_ids, "text": completion.text,
                  "dropped_messages": completion.dropped_messages, "stats": completion.stats.as_dict()}
        print(json.dumps(result, ensure_ascii=False))
    else:
        print()
        print(_stats_line(completion), file=sys.stderr)
    return 0


def run_chat(engine, args) -> int:
    print(f"{engine.info.name}: type a message, /reset to start over, /exit to quit. "
          "Ctrl-C stops an answer.", file=sys.stderr)
    history = [{"role": "system", "content": args.system}] if args.system else []
    settings = _settings(args)
    while True:
        try:
            line = input(">>> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if line.strip() in ("/exit", "/quit"):
            return 0
        if line.strip() == "/reset":
            history = history[:1] if args.system else []
            continue
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        shown: list[str] = []

        def on_token(token: int, text: str) -> None:
            shown.append(text)
            print(text, end="", flush=True)
        try:
            prompt = engine.prepare_chat(history, settings.max_new_tokens)
            completion = engine.chat(prompt, settings, on_token, **_state(args))
            print()
            left_out = _left_out_line(completion)
            if left_out:
                print(left_out, file=sys.stderr)
            print(_stats_line(completion), file=sys.stderr)
        except KeyboardInterrupt:
            print("\n[stopped]", file=sys.stderr)  # the partial answer stays in the history
        except EngineError as exc:
            print(f"\n{exc}", file=sys.stderr)
            history.pop()
            continue
        history.append({"role": "assistant", "content": "".join(shown)})


def run_verify(args) -> int:
    path = args.model or default_model_files(args.version)["checkpoint"]
    print(f"Reading every tensor of {path} ...", file=sys.stderr)
    bad = verify_checkpoint(path, progress=lambda d, t: _progress("verifying", d, t))
    if bad:
        print(f"{path}: {len(bad)} tensors hold NaN or Inf (the file is damaged; download it again): "
              + ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""), file=sys.stderr)
        return 2
    print(f"{path}: every tensor holds finite numbers.", file=sys.stderr)
    return 0


def run_server(args) -> int:
    import api_server  # only --serve needs the web stack

    if args.prompt is not None or args.prompt_ids:
        raise EngineError("Give either --serve or a one-shot prompt, not both.")
    if args.max_waiting < 0:
        raise EngineError(f"--max-waiting must be 0 or more, got {args.max_waiting}.")
    if args.parallel is not None and not 1 <= args.parallel <= 16:
        raise EngineError(f"--parallel must be from 1 to 16, got {args.parallel}.")
    api_server.check_address(args.host, args.port, args.api_key)
    api_server.open_listener(args.host, args.port).close()  # a port in use is reported before loading
    api_server.serve(_load(args), args.host, args.port, args.api_key, max_waiting=args.max_waiting,
                     lookup=args.lookup)
    return 0


def main(argv=None) -> int:
    utf8_stdio()
    args = parse_args(argv)
    try:
        if args.verify:
            return run_verify(args)
        if args.prompt is not None and args.prompt_ids:
            raise EngineError("Give either --prompt or --prompt-ids, not both.")
        if args.prompt is not None and not args.prompt.strip():
            raise EngineError("The prompt is empty: pass some text with --prompt.")
        if args.prompt_ids:
            _parse_ids(args.prompt_ids)
        _settings(args)  # refuse bad option values before spending a minute on loading
        if args.serve:
            return run_server(args)
        if args.parallel is not None:
            raise EngineError("--parallel is for --serve (several programs' requests answered at once).")
        engine = _load(args)
        try:
            if args.prompt is not None or args.prompt_ids:
                return run_once(engine, args)
            return run_chat(engine, args)
        finally:
            engine.flush_states()  # the last answer's state is on disk before the process ends
    except EngineError as exc:
        return report(exc, None if args.builtin else args.version)
    except MemoryError:
        print("error: not enough memory to load this model. Close other programs, use --quantize int8 or int4, or a "
              "smaller --max-seq-len.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\n[interrupted]", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
