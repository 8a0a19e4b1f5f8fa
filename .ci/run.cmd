@echo off
rem CI entry point on Windows: the same as .ci/run.
cd /d "%~dp0.."
python install.py --tests --mindformers
exit /b %ERRORLEVEL%
