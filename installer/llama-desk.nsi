; llama-desk's Windows installer: per user, no admin rights (as Ollama's). Built by installer/build_windows.py:
;
;   makensis -DVERSION=0.1.0 -DSTAGE=<staged files> -DOUTFILE=<setup.exe> -DAPP_WHEEL=<name> -DPIP_WHEEL=<name>
;            [-DOFFLINE] [-DBUNDLED_PYTHON=<python-3.11.9-embed-amd64.zip>] llama-desk.nsi
;
; What it does: unpacks Python's embeddable runtime into $INSTDIR\python (the offline build carries it; the
; online one downloads it, else falls back to the user's own `py -3.11`), runs setup_llama_desk.py with it
; (pip: the offline build's wheels, or PyPI / a mirror chosen on a page of its own), makes a Start-menu and a
; desktop shortcut (pythonw.exe -I -m app: no console, and no stray folder imported) and a per-user entry in
; "Installed apps". Neither it nor the uninstaller touches anything while the app runs (the mutex the app holds).
; The uninstaller keeps the conversations (the user-data folder, %LOCALAPPDATA%\llama-desk or LLAMA_DESK_HOME)
; unless a box is ticked, and the downloaded models unless a box of their own, which shows their size, is.
;
; Silent: setup.exe /S [/MIRROR=tuna|aliyun|huawei|pypi] [/D=folder]; uninstall.exe /S [/REMOVEDATA] [/REMOVEDOWNLOADS]

Unicode true
ManifestDPIAware true
RequestExecutionLevel user
Target amd64-unicode
!ifdef OFFLINE
  SetCompressor zlib  ; the wheels are zip files already: LZMA would take minutes for a few percent
!else
  SetCompressor /SOLID lzma
!endif

!include MUI2.nsh
!include LogicLib.nsh
!include FileFunc.nsh
!include nsDialogs.nsh
!include WinVer.nsh
!include x64.nsh

!define APP "llama-desk"
!include "${STAGE}\user_data.nsh"  ; DATA_HOME_ENV, DATA_FOLDER and RemoveOurData, from engine/paths.py
!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${APP}"
!ifndef PYTHON_VERSION
  !define PYTHON_VERSION "3.11.9"
!endif

Name "${APP}"
OutFile "${OUTFILE}"
InstallDir "$LOCALAPPDATA\Programs\${APP}"
InstallDirRegKey HKCU "Software\${APP}" "InstallDir"
BrandingText "${APP} ${VERSION}"
ShowInstDetails show
ShowUninstDetails show

Var Mirror        ; "" (pip's own settings), pypi, tuna, aliyun or huawei
!ifndef OFFLINE
  Var MirrorList  ; the mirror page's drop-down
!endif
Var Python        ; the python.exe that runs setup_llama_desk.py
Var GuiPython     ; the console-less one the shortcuts start
Var SetupOptions
Var DataDir
Var RemoveData       ; ${BST_CHECKED} or ${BST_UNCHECKED}: the uninstall page's boxes (or /REMOVEDATA...)
Var RemoveDownloads
Var DownloadsMB      ; the downloaded models' size
Var DownloadsSize    ; the same for people: "13.5 GB"
Var DataBox
Var DownloadsBox

!define MUI_ICON "${STAGE}\llama-desk.ico"
!define MUI_UNICON "${STAGE}\llama-desk.ico"
!define MUI_ABORTWARNING
!define MUI_FINISHPAGE_RUN
!define MUI_FINISHPAGE_RUN_FUNCTION LaunchApp
!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_DIRECTORY
!ifndef OFFLINE
  Page custom MirrorPage MirrorPageLeave
!endif
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
UninstPage custom un.DataPage un.DataPageLeave
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"
!insertmacro MUI_LANGUAGE "SimpChinese"

LangString MirrorTitle ${LANG_ENGLISH} "Download source"
LangString MirrorTitle ${LANG_SIMPCHINESE} "下载源"
LangString MirrorSubtitle ${LANG_ENGLISH} "Where to download Python packages from (about 400 MB)."
LangString MirrorSubtitle ${LANG_SIMPCHINESE} "从哪里下载 Python 软件包（约 400 MB）。"
LangString MirrorText ${LANG_ENGLISH} "In mainland China a mirror is usually much faster than PyPI itself."
LangString MirrorText ${LANG_SIMPCHINESE} "在中国大陆，使用国内镜像通常比直接访问 PyPI 快得多。"
LangString MirrorPyPI ${LANG_ENGLISH} "PyPI (pypi.org)"
LangString MirrorPyPI ${LANG_SIMPCHINESE} "PyPI 官方 (pypi.org)"
LangString MirrorTuna ${LANG_ENGLISH} "Tsinghua University mirror (China)"
LangString MirrorTuna ${LANG_SIMPCHINESE} "清华大学镜像"
LangString MirrorAliyun ${LANG_ENGLISH} "Alibaba Cloud mirror (China)"
LangString MirrorAliyun ${LANG_SIMPCHINESE} "阿里云镜像"
LangString MirrorHuawei ${LANG_ENGLISH} "Huawei Cloud mirror (China)"
LangString MirrorHuawei ${LANG_SIMPCHINESE} "华为云镜像"
LangString NeedsX64 ${LANG_ENGLISH} "llama-desk needs 64-bit Windows 10 or later."
LangString NeedsX64 ${LANG_SIMPCHINESE} "llama-desk 需要 64 位 Windows 10 或更高版本。"
LangString NoPython ${LANG_ENGLISH} "Python ${PYTHON_VERSION} could not be downloaded and no Python 3.11 is installed. Connect to the internet and run this again, or use the offline installer (llama-desk-${VERSION}-offline-setup.exe), or install Python 3.11 (64-bit) from python.org first."
LangString NoPython ${LANG_SIMPCHINESE} "无法下载 Python ${PYTHON_VERSION}，本机也没有安装 Python 3.11。请联网后重新运行，或使用离线安装包 (llama-desk-${VERSION}-offline-setup.exe)，或先从 python.org 安装 Python 3.11（64 位）。"
; One message per exit code of setup_llama_desk.py (its EXIT_* constants); "error": it could not be started.
LangString SetupOptions ${LANG_ENGLISH} "The setup step was given options it does not accept (see the details above). This is a fault of the installer: please report it."
LangString SetupOptions ${LANG_SIMPCHINESE} "安装步骤收到了无法识别的参数（详见上方信息）。这是安装程序的问题，请报告给我们。"
LangString SetupPython ${LANG_ENGLISH} "The Python runtime cannot run llama-desk (see the details above). Run the installer again; if it happens again, install Python 3.11 (64-bit) from python.org first."
LangString SetupPython ${LANG_SIMPCHINESE} "Python 运行环境无法运行 llama-desk（详见上方信息）。请重新运行安装程序；如果仍然出现，请先从 python.org 安装 Python 3.11（64 位）。"
LangString SetupPathTooLong ${LANG_ENGLISH} "The install folder's path is too long for Windows (260 characters with the deepest file). Choose a shorter folder, or enable long paths in Windows, then run the installer again."
LangString SetupPathTooLong ${LANG_SIMPCHINESE} "安装文件夹的路径对 Windows 来说太长（加上最深的文件超过 260 个字符）。请选择较短的文件夹，或在 Windows 中启用长路径，然后重新运行安装程序。"
LangString SetupPackages ${LANG_ENGLISH} "Installing the Python packages failed (see the details above). Check the network and the free disk space, or choose another download source, then run the installer again."
LangString SetupPackages ${LANG_SIMPCHINESE} "安装 Python 软件包失败（详见上方信息）。请检查网络和磁盘剩余空间，或换一个下载源，然后重新运行安装程序。"
LangString SetupBuiltinModel ${LANG_ENGLISH} "The built-in model's package could not be installed (see the details above). Check the network, then run the installer again."
LangString SetupBuiltinModel ${LANG_SIMPCHINESE} "无法安装内置模型的软件包（详见上方信息）。请检查网络，然后重新运行安装程序。"
LangString SetupFinish ${LANG_ENGLISH} "The packages are installed, but the last steps failed (see the details above). Check that the folder is writable, then run the installer again."
LangString SetupFinish ${LANG_SIMPCHINESE} "软件包已安装，但最后几步失败（详见上方信息）。请检查文件夹是否可写，然后重新运行安装程序。"
LangString SetupDisk ${LANG_ENGLISH} "There is not enough free disk space for llama-desk (the details above say how much it needs and where). Free some space on that drive, or choose another install folder, then run the installer again."
LangString SetupDisk ${LANG_SIMPCHINESE} "磁盘剩余空间不足，无法安装 llama-desk（上方信息说明了需要多少空间以及在哪个位置）。请在该磁盘上腾出空间，或选择其他安装文件夹，然后重新运行安装程序。"
LangString SetupFailed ${LANG_ENGLISH} "The setup step failed (exit code $0; see the details above). Run the installer again; if it fails again, please report it with these details."
LangString SetupFailed ${LANG_SIMPCHINESE} "安装步骤失败（退出代码 $0，详见上方信息）。请重新运行安装程序；如果再次失败，请附上这些信息报告给我们。"
LangString AppRunning ${LANG_ENGLISH} "llama-desk is running. Close it (and wait for an answer in progress to stop), then click Retry."
LangString AppRunning ${LANG_SIMPCHINESE} "llama-desk 正在运行。请先关闭它（并等待正在生成的回答停止），然后点击“重试”。"
LangString OldFilesInUse ${LANG_ENGLISH} "The previous version's files in $INSTDIR could not all be removed: a program is still using them (llama-desk, or its local API server). Close it, then run the installer again."
LangString OldFilesInUse ${LANG_SIMPCHINESE} "无法删除 $INSTDIR 中旧版本的全部文件：仍有程序在使用它们（llama-desk 或其本地 API 服务）。请关闭它，然后重新运行安装程序。"
LangString DataTitle ${LANG_ENGLISH} "Your data"
LangString DataTitle ${LANG_SIMPCHINESE} "您的数据"
LangString DataSubtitle ${LANG_ENGLISH} "Nothing here is deleted unless you tick it."
LangString DataSubtitle ${LANG_SIMPCHINESE} "除非勾选，否则不会删除这里的任何内容。"
LangString AskRemoveData ${LANG_ENGLISH} "Also delete your conversations, settings and converted models in $DataDir"
LangString AskRemoveData ${LANG_SIMPCHINESE} "同时删除 $DataDir 中的对话记录、设置和转换后的模型"
LangString AskRemoveDownloads ${LANG_ENGLISH} "Also delete the downloaded models ($DownloadsSize) in $DataDir\checkpoints"
LangString AskRemoveDownloads ${LANG_SIMPCHINESE} "同时删除 $DataDir\checkpoints 中已下载的模型（$DownloadsSize）"
LangString StepPython ${LANG_ENGLISH} "Preparing the Python runtime..."
LangString StepPython ${LANG_SIMPCHINESE} "正在准备 Python 运行环境……"
LangString StepPackages ${LANG_ENGLISH} "Installing llama-desk and its packages (a few minutes)..."
LangString StepPackages ${LANG_SIMPCHINESE} "正在安装 llama-desk 及其软件包（需要几分钟）……"

; The running app holds a named mutex: an upgrade or uninstall while it runs would delete files in use.
!macro RefuseWhileRunning UN
Function ${UN}RefuseWhileRunning
  retry:
  System::Call 'kernel32::OpenMutexW(i 0x00100000, i 0, w "${APP_MUTEX}") p .r0'  ; SYNCHRONIZE
  ${If} $0 != 0
    System::Call 'kernel32::CloseHandle(p r0)'
    MessageBox MB_RETRYCANCEL|MB_ICONEXCLAMATION $(AppRunning) /SD IDCANCEL IDRETRY retry
    Abort
  ${EndIf}
FunctionEnd
!macroend
!insertmacro RefuseWhileRunning ""
!insertmacro RefuseWhileRunning "un."

Function .onInit
  ; MindSpore supports 64-bit Windows 10+; get_python.ps1 needs PowerShell 5 (Expand-Archive), which 10 has
  ${IfNot} ${RunningX64}
  ${OrIfNot} ${AtLeastWin10}
    MessageBox MB_ICONSTOP $(NeedsX64) /SD IDOK
    Abort
  ${EndIf}
  Call RefuseWhileRunning
  ${GetParameters} $0
  ClearErrors
  ${GetOptions} $0 "/MIRROR=" $Mirror
  ${If} ${Errors}
    StrCpy $Mirror ""
  ${EndIf}
FunctionEnd

!ifndef OFFLINE
Function MirrorPage
  !insertmacro MUI_HEADER_TEXT $(MirrorTitle) $(MirrorSubtitle)
  nsDialogs::Create 1018
  Pop $0
  ${NSD_CreateLabel} 0 0 100% 24u $(MirrorText)
  Pop $0
  ${NSD_CreateDropList} 0 30u 100% 80u ""
  Pop $MirrorList
  ${NSD_CB_AddString} $MirrorList $(MirrorPyPI)
  ${NSD_CB_AddString} $MirrorList $(MirrorTuna)
  ${NSD_CB_AddString} $MirrorList $(MirrorAliyun)
  ${NSD_CB_AddString} $MirrorList $(MirrorHuawei)
  ${If} $Mirror == ""
  ${AndIf} $LANGUAGE == ${LANG_SIMPCHINESE}
    StrCpy $Mirror "tuna"
  ${EndIf}
  ${Select} $Mirror
    ${Case} "tuna"
      ${NSD_CB_SelectString} $MirrorList $(MirrorTuna)
    ${Case} "aliyun"
      ${NSD_CB_SelectString} $MirrorList $(MirrorAliyun)
    ${Case} "huawei"
      ${NSD_CB_SelectString} $MirrorList $(MirrorHuawei)
    ${CaseElse}
      ${NSD_CB_SelectString} $MirrorList $(MirrorPyPI)
  ${EndSelect}
  nsDialogs::Show
FunctionEnd

Function MirrorPageLeave
  ${NSD_GetText} $MirrorList $0
  ${Select} $0
    ${Case} $(MirrorTuna)
      StrCpy $Mirror "tuna"
    ${Case} $(MirrorAliyun)
      StrCpy $Mirror "aliyun"
    ${Case} $(MirrorHuawei)
      StrCpy $Mirror "huawei"
    ${CaseElse}
      StrCpy $Mirror "pypi"
  ${EndSelect}
FunctionEnd
!endif

; $Python / $GuiPython / $SetupOptions: the embeddable runtime in $INSTDIR\python, else the user's Python 3.11.
Function GetPython
  DetailPrint $(StepPython)
!ifdef BUNDLED_PYTHON
  nsExec::ExecToLog 'powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File "$INSTDIR\setup\get_python.ps1" -Dest "$INSTDIR\python" -Zip "$INSTDIR\setup\${BUNDLED_PYTHON}"'
!else
  StrCpy $1 ""
  ${If} $Mirror != ""
    StrCpy $1 "-Mirror $Mirror"  ; never an empty argument: powershell -File may drop it and misread the next
  ${EndIf}
  nsExec::ExecToLog 'powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File "$INSTDIR\setup\get_python.ps1" -Dest "$INSTDIR\python" -Version ${PYTHON_VERSION} $1'
!endif
  Pop $0
  ${If} $0 == 0
    StrCpy $Python "$INSTDIR\python\python.exe"
    StrCpy $GuiPython "$INSTDIR\python\pythonw.exe"
    StrCpy $SetupOptions '--in-place --pip-wheel "$INSTDIR\setup\${PIP_WHEEL}"'
    Return
  ${EndIf}
  ; the Python launcher, if the user installed Python 3.11 from python.org: a venv in $INSTDIR\venv
  nsExec::ExecToStack 'py.exe -3.11-64 -c "import sys; print(sys.executable, end=str())"'
  Pop $0
  Pop $1
  ${If} $0 == 0
  ${AndIf} ${FileExists} $1
    DetailPrint "Using $1"
    StrCpy $Python $1
    StrCpy $GuiPython "$INSTDIR\venv\Scripts\pythonw.exe"
    StrCpy $SetupOptions ""
    Return
  ${EndIf}
  MessageBox MB_ICONSTOP $(NoPython) /SD IDOK
  Abort
FunctionEnd

Section "llama-desk" SecMain
  ; kB: the environment pip makes beside the files below (setup_llama_desk.py's INSTALL_BYTES["win32"]), so that
  ; the folder page shows the real space required and refuses a drive without it
  AddSize 1562500
  SetOutPath "$INSTDIR"
  ; an upgrade starts from a clean runtime; the user's data lives elsewhere and is never touched here
  RMDir /r "$INSTDIR\python"
  RMDir /r "$INSTDIR\venv"
  RMDir /r "$INSTDIR\setup"
  ${If} ${FileExists} "$INSTDIR\python\*.*"
  ${OrIf} ${FileExists} "$INSTDIR\venv\*.*"
    MessageBox MB_ICONSTOP $(OldFilesInUse) /SD IDOK  ; never a half-deleted runtime taken for a failed download
    Abort
  ${EndIf}
  File "${STAGE}\llama-desk.ico"
  SetOutPath "$INSTDIR\setup"
  File "${STAGE}\payload\*.*"
!ifdef OFFLINE
  SetOutPath "$INSTDIR\setup\wheels"
  File "${STAGE}\wheels\*.whl"
!endif
  Call GetPython

  DetailPrint $(StepPackages)
!ifdef OFFLINE
  StrCpy $0 '--wheels "$INSTDIR\setup\wheels"'
!else
  StrCpy $0 ""
  ${If} $Mirror != ""
    StrCpy $0 '--mirror $Mirror'
  ${EndIf}
!endif
  nsExec::ExecToLog '"$Python" "$INSTDIR\setup\setup_llama_desk.py" --prefix "$INSTDIR" --source "$INSTDIR\setup\${APP_WHEEL}" --no-shortcuts $SetupOptions $0'
  Pop $0
  ${If} $0 != 0
    Call SetupFailed
    Abort
  ${EndIf}
  RMDir /r "$INSTDIR\setup\wheels"  ; installed now: 400 MB the disk gets back
!ifdef BUNDLED_PYTHON
  Delete "$INSTDIR\setup\${BUNDLED_PYTHON}"
!endif

  SetOutPath "$INSTDIR"  ; the shortcuts' working folder
  CreateShortcut "$SMPROGRAMS\${APP}.lnk" "$GuiPython" "${APP_ARGS}" "$INSTDIR\llama-desk.ico" 0
  CreateShortcut "$DESKTOP\${APP}.lnk" "$GuiPython" "${APP_ARGS}" "$INSTDIR\llama-desk.ico" 0

  WriteUninstaller "$INSTDIR\uninstall.exe"
  WriteRegStr HKCU "Software\${APP}" "InstallDir" "$INSTDIR"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayName" "${APP}"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINST_KEY}" "Publisher" "llama-desk"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\llama-desk.ico"
  WriteRegStr HKCU "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINST_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINST_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  WriteRegDWORD HKCU "${UNINST_KEY}" "EstimatedSize" $0
SectionEnd

Function LaunchApp
  SetOutPath "$INSTDIR"
  Exec '"$GuiPython" ${APP_ARGS}'
FunctionEnd

; $0: the setup script's exit code (its EXIT_* constants), or "error" when it could not be started
Function SetupFailed
  ${Select} $0
    ${Case} 2
      MessageBox MB_ICONSTOP $(SetupOptions) /SD IDOK
    ${Case} 3
      MessageBox MB_ICONSTOP $(SetupPython) /SD IDOK
    ${Case} 4
      MessageBox MB_ICONSTOP $(SetupPathTooLong) /SD IDOK
    ${Case} 5
      MessageBox MB_ICONSTOP $(SetupPackages) /SD IDOK
    ${Case} 6
      MessageBox MB_ICONSTOP $(SetupBuiltinModel) /SD IDOK
    ${Case} 7
      MessageBox MB_ICONSTOP $(SetupFinish) /SD IDOK
    ${Case} 8
      MessageBox MB_ICONSTOP $(SetupDisk) /SD IDOK
    ${CaseElse}
      MessageBox MB_ICONSTOP $(SetupFailed) /SD IDOK
  ${EndSelect}
FunctionEnd

Function un.onInit
  Call un.RefuseWhileRunning
  ReadEnvStr $DataDir ${DATA_HOME_ENV}
  ${If} $DataDir == ""
    StrCpy $DataDir "$LOCALAPPDATA\${DATA_FOLDER}"
  ${EndIf}
  StrCpy $RemoveData ${BST_UNCHECKED}
  StrCpy $RemoveDownloads ${BST_UNCHECKED}
  ${GetParameters} $0
  ClearErrors
  ${GetOptions} $0 "/REMOVEDATA" $1
  ${IfNot} ${Errors}
    StrCpy $RemoveData ${BST_CHECKED}
  ${EndIf}
  ClearErrors
  ${GetOptions} $0 "/REMOVEDOWNLOADS" $1
  ${IfNot} ${Errors}
    StrCpy $RemoveDownloads ${BST_CHECKED}
  ${EndIf}
  !insertmacro SizeOfDownloads $DownloadsMB
  ${If} $DownloadsMB >= 1024
    IntOp $1 $DownloadsMB / 1024
    IntOp $2 $DownloadsMB % 1024
    IntOp $2 $2 * 10
    IntOp $2 $2 / 1024
    StrCpy $DownloadsSize "$1.$2 GB"
  ${Else}
    StrCpy $DownloadsSize "$DownloadsMB MB"
  ${EndIf}
FunctionEnd

; Two boxes, both unticked unless /REMOVEDATA or /REMOVEDOWNLOADS: the data, and (with its size) the downloads
Function un.DataPage
  ${IfNot} ${FileExists} "$DataDir\*.*"
    Abort  ; nothing to ask about
  ${EndIf}
  !insertmacro MUI_HEADER_TEXT $(DataTitle) $(DataSubtitle)
  nsDialogs::Create 1018
  Pop $0
  ${NSD_CreateCheckbox} 0 0 100% 24u $(AskRemoveData)
  Pop $DataBox
  ${NSD_SetState} $DataBox $RemoveData
  StrCpy $DownloadsBox ""
  ${If} $DownloadsMB > 0
    ${NSD_CreateCheckbox} 0 34u 100% 24u $(AskRemoveDownloads)
    Pop $DownloadsBox
    ${NSD_SetState} $DownloadsBox $RemoveDownloads
  ${EndIf}
  nsDialogs::Show
FunctionEnd

Function un.DataPageLeave
  ${NSD_GetState} $DataBox $RemoveData
  ${If} $DownloadsBox != ""
    ${NSD_GetState} $DownloadsBox $RemoveDownloads
  ${EndIf}
FunctionEnd

Section "Uninstall"
  Delete "$SMPROGRAMS\${APP}.lnk"
  Delete "$DESKTOP\${APP}.lnk"
  ; only what the installer put there: $INSTDIR may be a folder the user chose that holds other things
  RMDir /r "$INSTDIR\python"
  RMDir /r "$INSTDIR\venv"
  RMDir /r "$INSTDIR\setup"
  Delete "$INSTDIR\install.json"
  Delete "$INSTDIR\setup_llama_desk.py"
  Delete "$INSTDIR\llama-desk.ico"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKCU "${UNINST_KEY}"
  DeleteRegKey HKCU "Software\${APP}"

  ; the downloads first: removing our data ends by removing the folder when nothing else is left in it
  ${If} $RemoveDownloads == ${BST_CHECKED}
    !insertmacro RemoveDownloads
  ${EndIf}
  ${If} $RemoveData == ${BST_CHECKED}
    !insertmacro RemoveOurData
  ${EndIf}
SectionEnd
