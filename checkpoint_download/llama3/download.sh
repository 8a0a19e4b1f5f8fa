#!/usr/bin/env sh
# Download the llama3 checkpoint and tokenizer into this folder (resumes; shows progress).
exec python3 "$(dirname "$0")/../download.py" llama3 "$@"
