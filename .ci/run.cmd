@echo off
rem CI entry point on Windows: the same as .ci/run (Windows already has what Qt needs, and Microsoft YaHei).
cd /d "%~dp0.."
python install.py --mindformers --setup-only || exit /b %ERRORLEVEL%
python install.py --tests
exit /b %ERRORLEVEL%
