#!/usr/bin/env sh
# Download the llama3 checkpoint (llama3-8B.ckpt) and tokenizer into this folder: resumes, verifies, shows progress.
# The same as: python -m checkpoint_download llama3 [-o DIR]   (see python -m checkpoint_download --help)
here="$(dirname "$0")"
py=python3
if [ -x "$here/../../.venv/bin/python" ]; then py="$here/../../.venv/bin/python"; fi
exec "$py" "$here/../download.py" llama3 "$@"
