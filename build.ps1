# Plover: set up, build, test, demo and benchmark.
#
#   ./build.sh setup        install packages; build the patched QEMU (cached), libplover.so, the CLI, the guest
#   ./build.sh test         setup, then every test suite (managed, native, end to end)
#   ./build.sh demo [--disk] setup, then the replicated Redis demo (--disk: with a replicated disk the guest writes)
#   ./build.sh bench NAME   setup, then tests-native/bench/NAME.sh (hash, consensus, sync, e2e, disk), then its plots
#   ./build.sh bench report plots of every benchmark JSON present and one HTML page (artifacts/bench/report.html)
#   ./build.sh env          print the built artifacts as KEY=VALUE lines
#   ./build.sh fuzz [TARGET [SECONDS]]  coverage-guided fuzzing of TARGET with AFL++ (fuzz/README.md); no TARGET: the list
#
# build.sh only bootstraps: it restores the .NET local tools (.config/dotnet-tools.json pins PowerShell 7.6.10) and
# runs this script with the same arguments (dotnet pwsh ./build.ps1 COMMAND ...).
#
# Expensive results are cached outside the repository, keyed by what produced them:
#   $PLOVER_CACHE (default /var/cache/plover)/qemu-<key>/  the QEMU binary (key: source version, patches, ABI header)
#   $PLOVER_CACHE/guest-<key>/                            kernel + initramfs (key: kernel, init script)
# Repository-local outputs go to out/ (libraries, CLI, native test build) and artifacts/ (benchmark JSON); the
# library and CLI are published again only when their inputs changed (out/lib/.key).
Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'
$PSNativeCommandUseErrorActionPreference = $false   # exit codes are checked where they matter, as build.sh did

$Root = $PSScriptRoot
$Cache = if ($env:PLOVER_CACHE) { $env:PLOVER_CACHE } else { '/var/cache/plover' }
$Out = if ($env:PLOVER_OUT) { $env:PLOVER_OUT } else { "$Root/out" }
$Artifacts = if ($env:PLOVER_ARTIFACTS) { $env:PLOVER_ARTIFACTS } else { "$Root/artifacts" }
$Jobs = [Environment]::ProcessorCount

# The QEMU source: Debian trixie's package, pinned; if the mirror no longer has this exact version the newest
# 10.0.x in trixie is used and the patches must still apply (the cache key carries the version actually used).
$QemuDebVersion = '1:10.0.13+ds-0+deb13u1'
$QemuConfigure = @('--target-list=x86_64-softmmu', '--disable-docs', '--disable-werror', '--enable-slirp', '--disable-gtk',
    '--disable-sdl', '--disable-vnc', '--disable-opengl', '--disable-spice', '--disable-xen', '--disable-download',
    '--disable-install-blobs', '--python=/usr/bin/python3', '--enable-plover')

# ---------------------------------------------------------------- the Debian packages setup installs (one place)
$AptPackages = @('dpkg-dev', 'ninja-build', 'libglib2.0-dev', 'libpixman-1-dev', 'flex', 'bison', 'pkg-config', 'libslirp-dev', 'libfdt-dev',
    'python3-venv', 'seabios', 'ipxe-qemu', 'qemu-system-data', 'busybox-static', 'linux-image-amd64', 'cpio', 'iproute2', 'redis-server', 'redis-tools', 'tcpdump',
    'libibverbs-dev', 'librdmacm-dev', 'libucx0', 'cmake', 'g++', 'libgtest-dev', 'libgmock-dev', 'nlohmann-json3-dev',
    'libvirt-daemon-system', 'libvirt-daemon-driver-qemu', 'libvirt-clients')
$AptBackports = @('meson', 'python3-pycotap')

function Log([string]$Message) { [Console]::Error.WriteLine("`e[1m==> $Message`e[0m") }
function Die([string]$Message) { [Console]::Error.WriteLine("build.sh: $Message"); exit 1 }
function Warn([string]$Message) { [Console]::Error.WriteLine("build.sh: $Message") }
function IsRoot { (& id -u) -eq '0' }
function Tail([string]$Path, [int]$Lines) { if (Test-Path $Path) { Get-Content $Path -Tail $Lines | Write-Host } }
function NewDir([string]$Path) { New-Item -ItemType Directory -Force -Path $Path | Out-Null }
function Remove([string]$Path) { if (Test-Path $Path) { Remove-Item -Recurse -Force -Path $Path } }

# sha256 of bytes, hex, the first 16 digits: what `... | sha256sum | cut -c1-16` gives.
function Key([byte[]]$Bytes) {
    ([Convert]::ToHexString([Security.Cryptography.SHA256]::HashData($Bytes))).ToLowerInvariant().Substring(0, 16)
}
function Utf8([string]$Text) { , [Text.Encoding]::UTF8.GetBytes($Text) }   # the comma: one byte[], not its bytes

# ---------------------------------------------------------------- packages
function AptSources {
    $f = '/etc/apt/sources.list.d/plover.sources'
    if (Test-Path $f) { return }
    Log 'adding Debian trixie sources (QEMU 10.0 source) and bookworm-backports (meson >= 1.5)'
    $text = @'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

'@
    [IO.File]::WriteAllText($f, $text.Replace("`r`n", "`n"))
    & apt-get update -q > $null
}

function MissingPackages([string[]]$Names) {
    foreach ($p in $Names) {
        $status = & dpkg-query -W -f='${Status}' $p 2> $null
        if ("$status" -notmatch 'install ok installed') { $p }
    }
}

function SetupPackages {
    $missing = @(MissingPackages $AptPackages)
    $missingBp = @(MissingPackages $AptBackports)
    # meson from bookworm is 1.0; QEMU 10 needs >= 1.5
    $meson = & dpkg-query -W -f='${Version}' meson 2> $null
    if (-not $meson) { $meson = '0' }
    & dpkg --compare-versions "$meson" ge 1.5
    if ($LASTEXITCODE -ne 0) { $missingBp += 'meson' }
    if ($missing.Count + $missingBp.Count -eq 0 -and (Test-Path '/etc/apt/sources.list.d/plover.sources')) { return }
    if (-not (IsRoot)) { Die "packages missing ($missing $missingBp) and not root: run as root or install them" }
    AptSources
    Log "installing packages: $(($missing + $missingBp) -join ' ')"
    & apt-get update -q > $null
    $env:DEBIAN_FRONTEND = 'noninteractive'
    if ($missing.Count -gt 0) {
        & apt-get install -y -q --no-install-recommends @missing > $null
        if ($LASTEXITCODE -ne 0) { Die "apt-get install $missing failed" }
    }
    if ($missingBp.Count -gt 0) {
        & apt-get install -y -q -t bookworm-backports @missingBp > $null
        if ($LASTEXITCODE -ne 0) { Die "apt-get install -t bookworm-backports $missingBp failed" }
    }
}

# ---------------------------------------------------------------- QEMU
function VersionSortLast([string[]]$Names) { $Names | & /usr/bin/sort -V | Select-Object -Last 1 }

function QemuSource {  # the path of the .dsc to build from
    $src = "$Cache/src"
    NewDir $src
    $v = $QemuDebVersion.Substring($QemuDebVersion.IndexOf(':') + 1)
    if (-not (Test-Path "$src/qemu_$v.dsc")) {
        Push-Location $src
        try {
            & apt-get source -q --download-only "qemu=$QemuDebVersion" *> $null
            if ($LASTEXITCODE -ne 0) { & apt-get source -q --download-only 'qemu/trixie' *> $null }
            if ($LASTEXITCODE -ne 0) { Die 'cannot download the QEMU source from Debian trixie (is deb-src for trixie configured?)' }
        } finally { Pop-Location }
    }
    if (Test-Path "$src/qemu_$v.dsc") { return "$src/qemu_$v.dsc" }
    VersionSortLast @(Get-ChildItem -Path $src -Filter 'qemu_10.0.*.dsc' | ForEach-Object FullName)
}

# The bytes build.sh hashed: the .dsc's name, every patch and the ABI header, the configure line.
function QemuKey([string]$Dsc) {
    $bytes = [Collections.Generic.List[byte]]::new()
    $bytes.AddRange((Utf8 ((Split-Path -Leaf $Dsc) + "`n")))
    $patches = @(Get-ChildItem -Path "$Root/qemu-patches" -Filter '*.patch' | ForEach-Object FullName)
    [Array]::Sort($patches, [StringComparer]::Ordinal)
    foreach ($f in $patches + "$Root/interop/plover_abi.h") {
        $bytes.AddRange([IO.File]::ReadAllBytes($f))
    }
    $bytes.AddRange((Utf8 (($QemuConfigure -join ' ') + "`n")))
    Key $bytes.ToArray()
}

function SetupQemu {
    $dsc = QemuSource
    $key = QemuKey $dsc
    $dir = "$Cache/qemu-$key"
    $script:Qemu = "$dir/bin/qemu-system-x86_64"
    if (Test-Path $script:Qemu) { return }
    Log "building patched QEMU from $(Split-Path -Leaf $dsc) (cache key $key; about 4 minutes on 2 cores)"
    $work = (& mktemp -d "$Cache/qemu-build.XXXXXX")
    & dpkg-source -x $dsc "$work/src" *> "$work/dpkg-source.log"
    if ($LASTEXITCODE -ne 0) { Get-Content "$work/dpkg-source.log" | Write-Host; Die 'dpkg-source failed' }
    foreach ($p in Get-ChildItem -Path "$Root/qemu-patches" -Filter '*.patch' | Sort-Object Name) {
        & patch -d "$work/src" -p1 -s --no-backup-if-mismatch -i $p.FullName
        if ($LASTEXITCODE -ne 0) { Die "patch $($p.Name) does not apply to $(Split-Path -Leaf $dsc)" }
    }
    Copy-Item "$Root/interop/plover_abi.h" "$work/src/include/system/plover-abi.h"
    NewDir "$work/src/build"
    Push-Location "$work/src/build"
    try {
        & ../configure @QemuConfigure *> "$work/configure.log"
        if ($LASTEXITCODE -ne 0) { Tail "$work/configure.log" 30; Die "QEMU configure failed (log: $work/configure.log)" }
        $t0 = [Diagnostics.Stopwatch]::StartNew()
        & ninja "-j$Jobs" qemu-system-x86_64 *> "$work/ninja.log"
        if ($LASTEXITCODE -ne 0) {
            & grep -m20 -A5 'error' "$work/ninja.log"
            Die "QEMU build failed (log: $work/ninja.log)"
        }
    } finally { Pop-Location }
    NewDir "$dir.tmp/bin"
    Copy-Item "$work/src/build/qemu-system-x86_64" "$dir.tmp/bin/"
    [IO.File]::WriteAllText("$dir.tmp/BUILD-INFO", "$(Split-Path -Leaf $dsc) built in $([int]$t0.Elapsed.TotalSeconds) s`n")
    Remove $dir
    Move-Item "$dir.tmp" $dir
    Remove $work
    Log "QEMU ready: $script:Qemu ($((Get-Content "$dir/BUILD-INFO").Trim()))"
}

# ---------------------------------------------------------------- library and CLI
function DotnetEnv {
    $env:DOTNET_CLI_TELEMETRY_OPTOUT = '1'; $env:DOTNET_NOLOGO = '1'; $env:DOTNET_SKIP_FIRST_TIME_EXPERIENCE = '1'
}

# Everything the library and the CLI are built from (sources, projects, proto, ABI header, SDK version); the same
# bytes build.sh hashed: `dotnet --version`, then one "SHA256  PATH" line per file in C (ordinal) order.
function LibraryKey {
    $text = [Text.StringBuilder]::new()
    [void]$text.Append(((& dotnet --version) -join "`n") + "`n")
    $extensions = @('.cs', '.csproj', '.proto', '.h', '.props', '.json')
    $files = foreach ($top in 'plugin', 'proto', 'interop', 'Directory.Build.props') {
        $path = Join-Path $Root $top
        $items = if (Test-Path $path -PathType Container) { Get-ChildItem -Path $path -Recurse -File -Force } else { Get-Item $path }
        foreach ($f in $items) {
            $rel = [IO.Path]::GetRelativePath($Root, $f.FullName)
            if ($rel -match '/(bin|obj)/' -or $extensions -notcontains $f.Extension) { continue }
            $rel
        }
    }
    $sorted = [string[]]@($files)
    [Array]::Sort($sorted, [StringComparer]::Ordinal)
    foreach ($rel in $sorted) {
        $hash = [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData([IO.File]::ReadAllBytes((Join-Path $Root $rel)))).ToLowerInvariant()
        [void]$text.Append("$hash  $rel`n")
    }
    Key (Utf8 $text.ToString())
}

function SetupLibrary {
    DotnetEnv
    NewDir "$Out/lib"; NewDir "$Out/bin"
    $key = LibraryKey
    $have = (Test-Path "$Out/lib/.key") -and ((Get-Content "$Out/lib/.key" -Raw).Trim() -eq $key)
    if ($have -and (Test-Path "$Out/bin/plover") -and (Test-Path "$Out/lib/libplover.so") -and
        (Test-Path "$Out/lib/libplover.x86-64-v3.so") -and (Test-Path "$Out/lib/libplover.x86-64-v4.so")) {
        return   # published from these very inputs already
    }
    Remove "$Out/lib/.key"
    Log 'publishing libplover.so (NativeAOT: x86-64-v2, v3 and v4 variants) and the plover CLI'
    # One intermediate directory per instruction-set variant so that each really gets its own native compile.
    foreach ($variant in 'v2', 'v3', 'v4') {
        $ilc = @(switch ($variant) { 'v3' { '-p:IlcInstructionSet=x86-64-v3' } 'v4' { '-p:IlcInstructionSet=x86-64-v4' } })
        & dotnet publish "$Root/plugin/Plover.Native/Plover.Native.csproj" -c Release -nologo -v:q `
            "-p:IntermediateOutputPath=obj/Release/$variant/" "-p:OutputPath=bin/Release/$variant/" @ilc `
            -o "$Out/publish-$variant" *> "$Out/publish-$variant.log"
        if ($LASTEXITCODE -ne 0) { Tail "$Out/publish-$variant.log" 30; Die "dotnet publish of libplover ($variant) failed" }
    }
    Copy-Item "$Out/publish-v2/libplover.so" "$Out/lib/libplover.so"
    Copy-Item "$Out/publish-v3/libplover.so" "$Out/lib/libplover.x86-64-v3.so"
    Copy-Item "$Out/publish-v4/libplover.so" "$Out/lib/libplover.x86-64-v4.so"
    & dotnet publish "$Root/plugin/Plover.Cli/Plover.Cli.csproj" -c Release -nologo -v:q -o "$Out/publish-cli" *> "$Out/publish-cli.log"
    if ($LASTEXITCODE -ne 0) { Tail "$Out/publish-cli.log" 30; Die 'dotnet publish of the plover CLI failed' }
    Copy-Item "$Out/publish-cli/plover" "$Out/bin/plover"
    [IO.File]::WriteAllText("$Out/lib/.key", "$key`n")
}

# ---------------------------------------------------------------- guest image
# The bytes build.sh hashed: `uname -m`, `ls /lib/modules`, the init script, `sha256sum /usr/bin/redis-check-rdb`.
function GuestKey {
    $text = [Collections.Generic.List[byte]]::new()
    $text.AddRange((Utf8 (((& uname -m) -join "`n") + "`n")))
    $modules = @(& ls /lib/modules)
    if ($modules.Count -gt 0) { $text.AddRange((Utf8 (($modules -join "`n") + "`n"))) }
    $text.AddRange([IO.File]::ReadAllBytes("$Root/tests-native/guest/init"))
    if (Test-Path '/usr/bin/redis-check-rdb') { $text.AddRange((Utf8 (((& sha256sum /usr/bin/redis-check-rdb) -join "`n") + "`n"))) }
    Key $text.ToArray()
}

# Copies a program and every shared library it loads (as ldd resolves them) into the guest root.
function GuestInstallProgram([string]$GuestRoot, [string]$Src, [string]$Dest) {
    & install -D -m 755 (& readlink -f $Src) "$GuestRoot$Dest"
    foreach ($lib in [regex]::Matches(((& ldd $Src) -join "`n"), '/[^ \n]*') | ForEach-Object Value) {
        if (-not (Test-Path "$GuestRoot$lib")) { & install -D -m 755 (& readlink -f $lib) "$GuestRoot$lib" }
    }
}

function SetupGuest {
    $kver = VersionSortLast @(& ls /lib/modules)
    if (-not (Test-Path "/boot/vmlinuz-$kver")) { Die "no kernel /boot/vmlinuz-$kver (package linux-image-amd64)" }
    $key = GuestKey
    $dir = "$Cache/guest-$key"
    $script:GuestKernel = "$dir/vmlinuz"
    $script:GuestInitrd = "$dir/initramfs.cpio.gz"
    if (Test-Path $script:GuestInitrd) { return }
    Log "building the guest initramfs (Debian kernel $kver, busybox, virtio-net, virtio-blk and ext4, redis-server)"
    $guest = (& mktemp -d)
    foreach ($d in 'bin', 'sbin', 'dev', 'proc', 'sys', 'tmp', 'etc', 'lib/modules', 'usr/bin', 'usr/sbin', 'run', 'var') { NewDir "$guest/$d" }
    Copy-Item /bin/busybox "$guest/bin/busybox"
    foreach ($m in 'virtio_ring', 'virtio', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio_pci', 'failover', 'net_failover', 'virtio_net', 'e1000',
            'virtio_blk', 'crc32c_generic', 'crc16', 'mbcache', 'jbd2', 'ext4') {
        $ko = & modinfo -k $kver -n $m
        if ($LASTEXITCODE -ne 0 -or -not $ko) { Die "kernel module $m not found for $kver" }
        Copy-Item $ko "$guest/lib/modules/$m.ko"
    }
    & install -m 755 "$Root/tests-native/guest/init" "$guest/init"
    # the replicated service: Debian's redis-server (a copy named redis-server: the binary acts by its name)
    GuestInstallProgram $guest /usr/bin/redis-server /usr/bin/redis-server
    NewDir "$dir.tmp"
    Push-Location $guest
    try {
        # PowerShell 7.4+ passes bytes unchanged between native commands and into a file
        & find . | & cpio -o -H newc --quiet | & gzip -1 > "$dir.tmp/initramfs.cpio.gz"
        if ($LASTEXITCODE -ne 0) { Die 'packing the guest initramfs failed' }
    } finally { Pop-Location }
    Copy-Item "/boot/vmlinuz-$kver" "$dir.tmp/vmlinuz"
    Remove $guest; Remove $dir
    Move-Item "$dir.tmp" $dir
}

# ---------------------------------------------------------------- benchmark plots
# The plots and the report use Debian's matplotlib, which is for /usr/bin/python3 (not a pyenv python3 on PATH).
# python3-munkres, -defcon and -unicodedata2 satisfy python3-fonttools' alternatives cheaply (otherwise apt takes
# python3-scipy, sympy and a C++ toolchain for pythran). Installed once, only by `bench`, never by setup or test:
# about 35 packages, 34 MB, half a minute.
$PlotPython = '/usr/bin/python3'
$PlotPackages = @('python3-matplotlib', 'python3-munkres', 'python3-defcon', 'python3-unicodedata2')
$Report = "$Root/tests-native/bench/report/report.py"

function SetupPlotting {
    & $PlotPython -c 'import matplotlib' 2> $null
    if ($LASTEXITCODE -eq 0) { return $true }
    if (-not (IsRoot)) { Warn "matplotlib missing for $PlotPython and not root: apt-get install $PlotPackages"; return $false }
    Log "installing Debian's python3-matplotlib for the benchmark plots (once; about 35 packages, half a minute)"
    & apt-get update -q *> $null
    $env:DEBIAN_FRONTEND = 'noninteractive'
    & apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 @PlotPackages > $null
    if ($LASTEXITCODE -ne 0) { Warn "apt-get install $PlotPackages failed"; return $false }
    & $PlotPython -c 'import matplotlib'
    return $LASTEXITCODE -eq 0
}

# After a benchmark: its plots beside its JSON. Never fails the benchmark: a missing library or a plotting error is
# a warning.
function BenchPlots([string]$Name) {
    if (-not (Test-Path "$Artifacts/bench/$Name.json")) { return }
    if (-not (SetupPlotting)) {
        Warn "warning: no plots for $Name.json (matplotlib unavailable); the benchmark's results stand"
        return
    }
    & $PlotPython $Report --dir "$Artifacts/bench" --plot $Name --no-html
    if ($LASTEXITCODE -ne 0) { Warn "warning: plotting $Name.json failed (see above); the benchmark's results stand" }
}

# ---------------------------------------------------------------- fuzzing
# AFL++ is installed once, only by `fuzz`, never by setup or test (the tests replay the corpus without it).
function SetupAfl {
    if (Get-Command afl-fuzz -CommandType Application -ErrorAction SilentlyContinue) { return }
    if (-not (IsRoot)) { Die 'afl-fuzz missing and not root: apt-get install afl++' }
    Log "installing Debian's afl++ for fuzzing (once)"
    & apt-get update -q *> $null
    $env:DEBIAN_FRONTEND = 'noninteractive'
    & apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 'afl++' > $null
    if ($LASTEXITCODE -ne 0) { Die 'apt-get install afl++ failed' }
}

# ---------------------------------------------------------------- env
function ResolveArtifacts {  # sets Qemu, Guest* from the cache without building
    $dsc = VersionSortLast @(Get-ChildItem -Path "$Cache/src" -Filter 'qemu_*.dsc' -ErrorAction SilentlyContinue | ForEach-Object FullName)
    $script:Qemu = if ($dsc) { "$Cache/qemu-$(QemuKey $dsc)/bin/qemu-system-x86_64" } else { '' }
    $key = GuestKey
    $script:GuestKernel = "$Cache/guest-$key/vmlinuz"
    $script:GuestInitrd = "$Cache/guest-$key/initramfs.cpio.gz"
}

function EnvLines {
    "PLOVER_QEMU=$script:Qemu"
    "PLOVER_LIB=$Out/lib/libplover.so"
    "PLOVER_CLI=$Out/bin/plover"
    "PLOVER_KERNEL=$script:GuestKernel"
    "PLOVER_INITRD=$script:GuestInitrd"
    'PLOVER_FIRMWARE=-L /usr/share/seabios -L /usr/lib/ipxe/qemu -L /usr/share/qemu'
    "PLOVER_ARTIFACTS=$Artifacts"
}

function PrintEnv { EnvLines | ForEach-Object { [Console]::Out.WriteLine($_) } }

function ExportEnv {
    foreach ($line in EnvLines) {
        $i = $line.IndexOf('=')
        [Environment]::SetEnvironmentVariable($line.Substring(0, $i), $line.Substring($i + 1))
    }
}

function Setup {
    SetupPackages
    NewDir $Cache; NewDir $Out; NewDir $Artifacts
    SetupQemu
    SetupGuest
    SetupLibrary
    ExportEnv
}

# ---------------------------------------------------------------- tests
function BuildNativeTests {
    Log 'building the native test harness'
    & cmake -S "$Root/tests-native" -B "$Out/native" -DCMAKE_BUILD_TYPE=RelWithDebInfo *> "$Out/native-cmake.log"
    if ($LASTEXITCODE -ne 0) { Get-Content "$Out/native-cmake.log" | Write-Host; Die 'cmake failed' }
    & cmake --build "$Out/native" "-j$Jobs" *> "$Out/native-build.log"
    if ($LASTEXITCODE -ne 0) { Tail "$Out/native-build.log" 40; Warn 'native test build failed'; return $false }
    return $true
}

function Count([string]$Line, [string]$Pattern) { [int]([regex]::Match($Line, $Pattern).Groups[1].Value) }

function RunTests {
    $mp = 0; $mf = 0; $ms = 0; $np = 0; $nf = 0; $ns = 0
    Log 'managed tests (xunit)'
    & dotnet test "$Root/tests-managed/Plover.Tests.csproj" -c Release -nologo *> "$Out/managed-tests.log"
    $managedRc = $LASTEXITCODE
    $log = @(Get-Content "$Out/managed-tests.log")
    $log | Select-String -Pattern '^\s+Failed |^\s+Skipped |error [A-Z]+[0-9]+|(Passed|Failed)! ' | Select-Object -First 60 |
        ForEach-Object { $_.Line } | Write-Host
    # xunit's summary: "Passed!  - Failed:     0, Passed:   123, Skipped:     0, Total:   123, Duration: ..."
    $line = $log | Select-String -Pattern '(Passed|Failed)! +- Failed:' | Select-Object -Last 1
    if ($line) {
        $mf = Count $line.Line 'Failed: *([0-9]+)'; $mp = Count $line.Line 'Passed: *([0-9]+)'; $ms = Count $line.Line 'Skipped: *([0-9]+)'
    } else {
        $log | Select-Object -Last 30 | Write-Host; $mf = 1
    }
    if ($managedRc -ne 0 -and $mf -eq 0) { $mf = 1 }
    $built = BuildNativeTests
    Log 'native and end-to-end tests (GoogleTest under ctest)'
    & ctest --test-dir "$Out/native" --output-on-failure -j1 --timeout 900 2>&1 | ForEach-Object { "$_" } | Tee-Object -FilePath "$Out/native-tests.log" | Write-Host
    $nativeRc = $LASTEXITCODE
    if (-not $built -and $nativeRc -eq 0) { $nativeRc = 1 }
    $nlog = @(Get-Content "$Out/native-tests.log")
    # ctest's summary: "97% tests passed, 1 tests failed out of 40"
    $line = $nlog | Select-String -Pattern 'tests passed, [0-9]+ tests failed out of [0-9]+' | Select-Object -Last 1
    if ($line) {
        $nf = Count $line.Line ' ([0-9]+) tests failed out of'
        $np = (Count $line.Line 'out of ([0-9]+)') - $nf
        $ns = @($nlog | Select-String -Pattern '\*\*\*Skipped|Not Run').Count
        $np -= $ns
    } else {
        $nf += 1
    }
    if ($nativeRc -ne 0 -and $nf -eq 0) { $nf = 1 }
    # CI shows only the tail of this output: name the failures again, last.
    if ($mf -ne 0) {
        Write-Host "managed failures (full log: $Out/managed-tests.log):"
        & grep -E -A4 '^\s+Failed [A-Za-z]' "$Out/managed-tests.log" | ForEach-Object { if ($_.Length -gt 300) { $_.Substring(0, 300) } else { $_ } } |
            Select-Object -First 40 | Write-Host
    }
    if ($nf -ne 0) {
        Write-Host 'native failures:'
        $nlog | Select-String -Pattern '\*\*\*Failed|\(Failed\)|\(Timeout\)' | Select-Object -First 20 | ForEach-Object { $_.Line } | Write-Host
    }
    Write-Host "managed: $mp passed, $mf failed, $ms skipped; native: $np passed, $nf failed, $ns skipped"
    Write-Host "$($mp + $np) passed, $($mf + $nf) failed, $($ms + $ns) skipped"
    return ($mf + $nf) -eq 0
}

# ---------------------------------------------------------------- main
function Usage {
    Get-Content $PSCommandPath -TotalCount 9 | Select-Object -Skip 1 | ForEach-Object { $_ -replace '^# ?', '' } | Write-Host
}

if ($MyInvocation.InvocationName -eq '.') { return }   # dot-sourced (to try one function): define only

$cmd = if ($args.Count -gt 0) { [string]$args[0] } else { '' }
switch ($cmd) {
    'setup' { Setup; PrintEnv }
    'env' { ResolveArtifacts; PrintEnv }
    'test' { Setup; if (RunTests) { exit 0 } else { exit 1 } }
    'demo' { Setup; & "$Root/tests-native/demo/demo.sh" @($args | Select-Object -Skip 1); exit $LASTEXITCODE }
    'fuzz' {
        DotnetEnv
        if ($args.Count -gt 1 -and $args[1]) { SetupAfl }
        & "$Root/fuzz/fuzz.sh" @($args | Select-Object -Skip 1)
        exit $LASTEXITCODE
    }
    'bench' {
        $name = if ($args.Count -gt 1) { [string]$args[1] } else { '' }
        $rest = @($args | Select-Object -Skip 2)
        $benches = (@(Get-ChildItem -Path "$Root/tests-native/bench" -Filter '*.sh' | Sort-Object Name | ForEach-Object BaseName) -join ' ') + ' '
        if (-not $name) { Die "usage: ./build.sh bench NAME [ARGS...] (one of: ${benches}report)" }
        if ($name -eq 'report') {   # plots of every JSON present, then the page; --test: the report's own test on fixtures instead
            if (-not (SetupPlotting)) { Die "the report needs matplotlib for $PlotPython (apt-get install $PlotPackages)" }
            if ($rest.Count -gt 0 -and $rest[0] -eq '--test') { & $PlotPython "$Root/tests-native/bench/report/test_report.py"; exit $LASTEXITCODE }
            NewDir "$Artifacts/bench"
            & $PlotPython $Report --dir "$Artifacts/bench" @rest
            exit $LASTEXITCODE
        }
        if (-not (Test-Path "$Root/tests-native/bench/$name.sh")) { Die "no benchmark '$name' (have: ${benches}report)" }
        Setup; NewDir "$Artifacts/bench"
        & bash "$Root/tests-native/bench/$name.sh" @rest
        $rc = $LASTEXITCODE
        if ($rc -eq 0) { BenchPlots $name }
        exit $rc
    }
    default {
        Usage
        if ($cmd) { Die "unknown command '$cmd'" }
        exit 2
    }
}
