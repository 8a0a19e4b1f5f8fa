@echo off
rem Install llama-desk for this user (no admin rights) from this source folder: the twin of install.sh.
rem Arguments go to setup_llama_desk.py, e.g.  installer\install.cmd --mirror tuna --launch
rem The one-file installer for users is the NSIS setup.exe (installer\build_windows.py builds it).
setlocal
set "SETUP=%~dp0setup_llama_desk.py"
if defined PYTHON goto with_python
py -3.11-64 -c "" >nul 2>nul
if not errorlevel 1 goto with_launcher
python -c "import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))" >nul 2>nul
if not errorlevel 1 goto with_path_python
echo install.cmd: Python 3.11 (64-bit) is needed: install it from python.org, then run this again. 1>&2
exit /b 2
:with_python
"%PYTHON%" "%SETUP%" %*
exit /b %ERRORLEVEL%
:with_launcher
py -3.11-64 "%SETUP%" %*
exit /b %ERRORLEVEL%
:with_path_python
python "%SETUP%" %*
exit /b %ERRORLEVEL%
