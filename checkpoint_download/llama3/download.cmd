@echo off
rem Download the llama3 checkpoint and tokenizer into this folder (resumes; shows progress).
python "%~dp0..\download.py" llama3 %*
exit /b %ERRORLEVEL%
