@echo off
rem Download the llama2 checkpoint and tokenizer into this folder (resumes; shows progress).
python "%~dp0..\download.py" llama2 %*
exit /b %ERRORLEVEL%
