"""The Pulumi CLI that `make up` runs: the one on the PATH, else a pinned, checked release.

A `pulumi` on the PATH is used as it is. Without one, the release archive of
`PULUMI_VERSION` for this OS and CPU is fetched from get.pulumi.com into a tools
directory inside the project (`.tools/`, gitignored), its SHA-256 compared with
`RELEASE_SHA256` below, and only then extracted, member by member checked to stay
inside its directory. The result is `<tools>/pulumi-v<version>-<os>-<arch>/pulumi/`,
holding `pulumi` and the language hosts it starts (`pulumi-language-python`, ...);
later runs find it there. A download that fails or does not match leaves nothing
behind. Standard library only: this runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

PULUMI_VERSION = "3.220.0"
DOWNLOAD_BASE = "https://get.pulumi.com/releases/sdk"

# SHA-256 (hex) of pulumi-v3.220.0-<os>-<arch>.tar.gz, by (os, arch). Source: NixOS/nixpkgs
# pkgs/by-name/pu/pulumi-bin/data.nix at commit c75b830bb6010608aea5f3123627c7582ad4e24c
# (its `version = "3.220.0"`, written by nix-prefetch-url), which gives each as Nix's
# base32 SHA-256 of the file:
#   linux-x64     1zs5mpy4rcgv0fadbb6pv95kq75152rpngch676j2n63w2awa03g
#   linux-arm64   0sznqiqc5n3y8spdixmp3fb4dcprchcc75mssmb3gk6q8c7yw016
#   darwin-x64    1vly2arzfn69a92v5mpf6yc1a15rnc4bh1f20zpcsq7mvfdjrfr1
#   darwin-arm64  0pjvlyllqg9pbs2w5am10nza67wwnhbdyhir2zld45zfyak9sbjb
# converted to hex (Nix's base32: alphabet 0-9a-z without e/o/u/t, the hash read as a
# little-endian number, its least significant 5-bit group printed last;
# tests/infra/bootstrap/test_pulumi_cli.py repeats the conversion). To move to another
# release, take the same four from Pulumi's pulumi-<version>-checksums.txt.
RELEASE_SHA256: Mapping[tuple[str, str], str] = {
    ("linux", "x64"): "6f00c595e0c35821cd31903d7bb328a11c3c4bdad7acd59403fbb14cfcad45ff",
    ("linux", "arm64"): "2600ee0f43d8cc3756d5ba96c31864f9b246961bb7f6d8ae467ed8c270c4f66b",
    ("darwin", "x64"): "21bb2c9bdbf560cdee07c205b808b3b904159837eed6b24552c958f7b3129eee",
    ("darwin", "arm64"): "4b2e9da6f2ee17d2e8173942df16b49c1fa3be05a1aac2855e373d4ca9a75b5e",
}

INSTALL_HELP = "https://www.pulumi.com/docs/iac/download-install/"
_OS = {"Linux": "linux", "Darwin": "darwin"}
_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}
_CHUNK = 1 << 20

Log = Callable[[str], None]


class BootstrapError(Exception):
    """Pulumi could not be set up; the message says why and what to do."""


class UnsupportedPlatform(BootstrapError):
    pass


class ChecksumMismatch(BootstrapError):
    pass


class UnsafeArchive(BootstrapError):
    pass


@dataclass(frozen=True)
class Release:
    version: str
    os: str
    arch: str
    sha256: str
    base_url: str = DOWNLOAD_BASE

    @property
    def name(self) -> str:
        return f"pulumi-v{self.version}-{self.os}-{self.arch}"

    @property
    def url(self) -> str:
        return f"{self.base_url.rstrip('/')}/{self.name}.tar.gz"


def release_for(
    system: str,
    machine: str,
    *,
    version: str = PULUMI_VERSION,
    checksums: Mapping[tuple[str, str], str] = RELEASE_SHA256,
    base_url: str = DOWNLOAD_BASE,
) -> Release:
    """The pinned release for `platform.system()` / `platform.machine()` values."""
    key = (_OS.get(system, system.lower()), _ARCH.get(machine.lower(), machine.lower()))
    if key not in checksums:
        known = ", ".join(f"{o}-{a}" for o, a in sorted(checksums))
        raise UnsupportedPlatform(
            f"no pinned Pulumi CLI for this platform ({system} {machine}; pinned: {known}). "
            f"Install Pulumi yourself ({INSTALL_HELP}) and run make up again."
        )
    return Release(version, key[0], key[1], checksums[key], base_url)


def install_dir(tools_dir: Path, release: Release) -> Path:
    """Where `release` lives once installed: the directory holding `pulumi`."""
    return tools_dir / release.name / "pulumi"


def ensure_pulumi(
    tools_dir: Path,
    *,
    search_path: str | None = None,
    system: str | None = None,
    machine: str | None = None,
    checksums: Mapping[tuple[str, str], str] = RELEASE_SHA256,
    base_url: str = DOWNLOAD_BASE,
    log: Log | None = None,
) -> Path:
    """The directory of the `pulumi` to run: on `search_path` (default $PATH), else the
    pinned release for this platform, installed under `tools_dir` if it is not yet."""
    say = log or _stderr
    found = shutil.which("pulumi", path=search_path)
    if found is not None:
        say(f"using the Pulumi CLI on your PATH: {found}")
        return Path(found).parent
    release = release_for(
        system or platform.system(),
        machine or platform.machine(),
        checksums=checksums,
        base_url=base_url,
    )
    target = install_dir(tools_dir, release)
    if _is_executable(target / "pulumi"):
        say(f"using Pulumi CLI v{release.version} from {target}")
        return target
    say(f"no pulumi on your PATH: installing Pulumi CLI v{release.version} into {tools_dir}")
    return install(release, tools_dir, log=say)


def install(release: Release, tools_dir: Path, *, log: Log | None = None) -> Path:
    """Fetch, check and extract `release` under `tools_dir`; all or nothing."""
    say = log or _stderr
    created = not tools_dir.exists()
    tools_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{release.name}-", dir=tools_dir))
    try:
        archive = work / f"{release.name}.tar.gz"
        say(f"fetching {release.url}")
        started = time.monotonic()
        with archive.open("wb") as out:
            digest, size = download(release.url, out)
        say(f"fetched {size / 1e6:.1f} MB in {time.monotonic() - started:.1f} s")
        if digest != release.sha256:
            raise ChecksumMismatch(
                f"{release.name}.tar.gz has SHA-256 {digest}, not the pinned "
                f"{release.sha256}: refusing to install it (nothing was installed). "
                "A proxy or mirror may have altered it; try again, or install Pulumi "
                f"yourself ({INSTALL_HELP})."
            )
        say("SHA-256 matches the pinned checksum; extracting")
        staged = work / "release"
        extract_safely(archive, staged)
        if not _is_executable(staged / "pulumi" / "pulumi"):
            raise UnsafeArchive(f"{release.name}.tar.gz holds no pulumi/pulumi executable")
        final = tools_dir / release.name
        if final.exists():  # a copy without its executable: replace it whole
            shutil.rmtree(final)
        os.replace(staged, final)
        say(f"installed Pulumi CLI v{release.version} in {final / 'pulumi'}")
        return final / "pulumi"
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if created and tools_dir.is_dir() and not any(tools_dir.iterdir()):
            tools_dir.rmdir()


def download(url: str, out: BinaryIO, *, timeout: float = 60.0) -> tuple[str, int]:
    """Stream `url` into `out`; its SHA-256 (hex) and size."""
    if not url.startswith(("https://", "http://")):
        raise BootstrapError(f"not an http(s) URL: {url}")
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (checked above)
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    except (urllib.error.URLError, OSError) as exc:
        raise BootstrapError(
            f"could not fetch {url}: {exc}. Check your network (or proxy), or install "
            f"Pulumi yourself ({INSTALL_HELP})."
        ) from None
    return digest.hexdigest(), size


def extract_safely(archive: Path, into: Path) -> None:
    """Extract a release archive whose members are plain files and directories under
    `pulumi/` only: no absolute paths, no `..`, no links, no devices."""
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for member in members:
            path = PurePosixPath(member.name)
            if path.is_absolute() or ".." in path.parts or path.parts[:1] != ("pulumi",):
                raise UnsafeArchive(f"refusing archive member outside pulumi/: {member.name!r}")
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchive(f"refusing archive member that is not a file: {member.name!r}")
        into.mkdir()
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second line of defence
            tar.extractall(into, members=members, filter="data")
        else:  # pragma: no cover - older 3.11 patch releases
            tar.extractall(into, members=members)  # noqa: S202 (members checked above)


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _stderr(message: str) -> None:
    print(f"pulumi-cli: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llm_stack.bootstrap",
        description="Print the directory holding the Pulumi CLI to run, installing the "
        "pinned release into --tools-dir first when none is on the PATH.",
    )
    parser.add_argument("--tools-dir", type=Path, default=Path(".tools"), metavar="DIR")
    parser.add_argument(
        "--mirror",
        default=DOWNLOAD_BASE,
        metavar="URL",
        help="fetch the release archive from here instead (same file name; the pinned "
        "checksum still applies)",
    )
    args = parser.parse_args(argv)
    try:
        print(ensure_pulumi(args.tools_dir.resolve(), base_url=args.mirror))
    except BootstrapError as exc:
        _stderr(f"error: {exc}")
        return 1
    return 0
