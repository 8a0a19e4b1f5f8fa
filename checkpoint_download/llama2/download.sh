#!/usr/bin/env sh
# Download the llama2 checkpoint and tokenizer into this folder (resumes; shows progress).
exec python3 "$(dirname "$0")/../download.py" llama2 "$@"
