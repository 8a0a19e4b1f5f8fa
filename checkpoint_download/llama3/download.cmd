@echo off
rem Download the llama3 checkpoint (llama3-8B.ckpt) and tokenizer into this folder: resumes, verifies, shows progress.
rem The same as: python -m checkpoint_download llama3 [-o DIR]   (see python -m checkpoint_download --help)
setlocal
set "PY=python"
if exist "%~dp0..\..\.venv\Scripts\python.exe" set "PY=%~dp0..\..\.venv\Scripts\python.exe"
"%PY%" "%~dp0..\download.py" llama3 %*
exit /b %ERRORLEVEL%
