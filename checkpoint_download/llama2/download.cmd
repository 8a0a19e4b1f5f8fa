@echo off
rem Download the llama2 checkpoint (llama2_7b.ckpt) and tokenizer into this folder: resumes, verifies, shows progress.
rem The same as: python -m checkpoint_download llama2 [-o DIR]   (see python -m checkpoint_download --help)
setlocal
set "PY=python"
if exist "%~dp0..\..\.venv\Scripts\python.exe" set "PY=%~dp0..\..\.venv\Scripts\python.exe"
"%PY%" "%~dp0..\download.py" llama2 %*
exit /b %ERRORLEVEL%
