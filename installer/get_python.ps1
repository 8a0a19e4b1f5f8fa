# Unpack Python's Windows "embeddable" runtime for llama-desk (run by the installer, llama-desk.nsi).
#
#   get_python.ps1 -Dest DIR -Zip python-3.11.9-embed-amd64.zip     # the offline installer's own copy
#   get_python.ps1 -Dest DIR -Version 3.11.9 [-Mirror tuna]          # download it (python.org; mirrors first in China)
#
# A downloaded runtime is used only if its python.exe carries a valid signature of the Python Software
# Foundation. Exit codes: 0 done, 3 no download worked, 4 bad signature, 5 the archive is not a runtime.
param(
  [Parameter(Mandatory = $true)][string]$Dest,
  [string]$Zip = "",
  [string]$Version = "3.11.9",
  [string]$Mirror = ""
)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'  # Invoke-WebRequest's progress bar makes it many times slower
[Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12

$name = "python-$Version-embed-amd64.zip"
$downloaded = $false
if (-not $Zip) {
  $urls = @("https://www.python.org/ftp/python/$Version/$name")
  if ($Mirror -and $Mirror -ne 'pypi') {
    # who chose a PyPI mirror is probably in China, where python.org is slow: its usual mirrors first
    $urls = @("https://mirrors.huaweicloud.com/python/$Version/$name",
              "https://registry.npmmirror.com/-/binary/python/$Version/$name") + $urls
  }
  $Zip = Join-Path $env:TEMP $name
  foreach ($url in $urls) {
    try {
      Write-Output "Downloading $url"
      Invoke-WebRequest -Uri $url -OutFile $Zip -UseBasicParsing -TimeoutSec 120
      $downloaded = $true
      break
    } catch {
      Write-Output "  failed: $($_.Exception.Message)"
    }
  }
  if (-not $downloaded) { exit 3 }
}

if (Test-Path -LiteralPath $Dest) { Remove-Item -LiteralPath $Dest -Recurse -Force }
Expand-Archive -LiteralPath $Zip -DestinationPath $Dest -Force
$python = Join-Path $Dest 'python.exe'
$pth = Get-ChildItem -LiteralPath $Dest -Filter 'python3*._pth' | Select-Object -First 1
$stdlib = Get-ChildItem -LiteralPath $Dest -Filter 'python3*.zip' | Select-Object -First 1
if (-not (Test-Path -LiteralPath $python) -or -not $pth -or -not $stdlib) {
  Write-Output "$Zip is not Python's embeddable runtime"
  exit 5
}
if ($downloaded) {
  $signature = Get-AuthenticodeSignature -LiteralPath $python
  if ($signature.Status -ne 'Valid' -or $signature.SignerCertificate.Subject -notmatch 'Python Software Foundation') {
    Write-Output "python.exe from the download is not signed by the Python Software Foundation ($($signature.Status)): not used"
    Remove-Item -LiteralPath $Dest -Recurse -Force
    exit 4
  }
  Remove-Item -LiteralPath $Zip -Force
}
# The runtime reads sys.path from its ._pth file only: add site-packages and `import site`, so that
# the packages pip installs there (and their .pth files) are found.
Set-Content -LiteralPath $pth.FullName -Encoding Ascii -Value @($stdlib.Name, '.', 'Lib\site-packages', 'import site')
Write-Output "Python runtime ready in $Dest"
exit 0
