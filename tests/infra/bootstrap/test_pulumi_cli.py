"""The Pulumi CLI bootstrap, against a release archive served on loopback.

The archive is built here (a `pulumi/pulumi` script and a language host, the layout of
Pulumi's release tarballs) and served by a stdlib HTTP server on 127.0.0.1 that counts
requests; the bootstrap is pointed at it as its download base. The checksum is the
archive's own (or a wrong one, or the real pinned ones, which this archive can never
match).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from llm_stack.bootstrap.pulumi_cli import (
    INSTALL_HELP,
    PULUMI_VERSION,
    RELEASE_SHA256,
    BootstrapError,
    ChecksumMismatch,
    UnsafeArchive,
    UnsupportedPlatform,
    ensure_pulumi,
    release_for,
)

REPO = Path(__file__).resolve().parents[3]
PULUMI_SCRIPT = b"#!/bin/sh\necho v" + PULUMI_VERSION.encode() + b"\n"
NAME = f"pulumi-v{PULUMI_VERSION}-linux-x64"


class ReleaseServer:
    """Serves `files` (URL path -> bytes) on loopback; counts the requests it answers."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/releases/sdk"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def publish(self, archive: bytes, name: str = NAME) -> str:
        """Serve `archive` as the release `name`; its SHA-256."""
        self.files[f"/releases/sdk/{name}.tar.gz"] = archive
        return hashlib.sha256(archive).hexdigest()


@pytest.fixture
def server() -> Iterator[ReleaseServer]:
    served = ReleaseServer()
    served.thread.start()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def tarball(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def file_member(name: str, data: bytes, mode: int = 0o755) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def dir_member(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def release_archive() -> bytes:
    """What a Pulumi release tarball holds: pulumi/ with the CLI and its language hosts."""
    return tarball(
        [
            dir_member("pulumi"),
            file_member("pulumi/pulumi", PULUMI_SCRIPT),
            file_member("pulumi/pulumi-language-python", b"#!/bin/sh\nexit 0\n"),
        ]
    )


def bootstrap(
    tools: Path, server: ReleaseServer, sha256: str, messages: list[str] | None = None
) -> Path:
    return ensure_pulumi(
        tools,
        search_path=str(tools.parent / "empty-path"),
        system="Linux",
        machine="x86_64",
        checksums={("linux", "x64"): sha256},
        base_url=server.base_url,
        log=(messages.append if messages is not None else lambda _m: None),
    )


def leftovers(tools: Path) -> list[str]:
    return sorted(str(p.relative_to(tools)) for p in tools.rglob("*")) if tools.exists() else []


# --- installing ---------------------------------------------------------------------------


@pytest.mark.process
def test_installs_the_checked_release_once_and_reuses_it(
    server: ReleaseServer, tmp_path: Path
) -> None:
    sha256 = server.publish(release_archive())
    tools = tmp_path / ".tools"
    messages: list[str] = []
    pulumi_dir = bootstrap(tools, server, sha256, messages)
    assert pulumi_dir == tools / NAME / "pulumi"
    version = subprocess.run(
        [str(pulumi_dir / "pulumi")], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"v{PULUMI_VERSION}"
    assert os.access(pulumi_dir / "pulumi-language-python", os.X_OK)
    assert leftovers(tools) == [NAME, f"{NAME}/pulumi", *[
        f"{NAME}/pulumi/{n}" for n in ("pulumi", "pulumi-language-python")
    ]]  # fmt: skip
    # It said what it did, step by step.
    joined = "\n".join(messages)
    for step in ("no pulumi on your PATH", "fetching", "SHA-256 matches", "installed"):
        assert step in joined
    assert server.requests == [f"/releases/sdk/{NAME}.tar.gz"]

    again: list[str] = []
    assert bootstrap(tools, server, sha256, again) == pulumi_dir
    assert len(server.requests) == 1  # no second download
    assert again == [f"using Pulumi CLI v{PULUMI_VERSION} from {pulumi_dir}"]


def test_a_wrong_checksum_installs_nothing(server: ReleaseServer, tmp_path: Path) -> None:
    sha256 = server.publish(release_archive())
    tools = tmp_path / ".tools"
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ChecksumMismatch) as refused:
        bootstrap(tools, server, wrong)
    assert sha256 in str(refused.value)
    assert wrong in str(refused.value)
    assert "nothing was installed" in str(refused.value)
    assert not tools.exists()  # it did not exist before, and does not now


def test_a_wrong_checksum_leaves_an_existing_tools_dir_as_it_was(
    server: ReleaseServer, tmp_path: Path
) -> None:
    server.publish(release_archive())
    tools = tmp_path / ".tools"
    tools.mkdir()
    (tools / "other-tool").write_text("kept")
    with pytest.raises(ChecksumMismatch):
        bootstrap(tools, server, "0" * 64)
    assert leftovers(tools) == ["other-tool"]


def test_a_failed_download_installs_nothing(server: ReleaseServer, tmp_path: Path) -> None:
    tools = tmp_path / ".tools"  # nothing published: the server answers 404
    with pytest.raises(BootstrapError, match=r"could not fetch .*404"):
        bootstrap(tools, server, "0" * 64)
    assert not tools.exists()


@pytest.mark.parametrize(
    "members",
    [
        [file_member("../escaped", b"x")],
        [file_member("/tmp/absolute", b"x")],
        [dir_member("pulumi"), file_member("pulumi/../../escaped", b"x")],
        [file_member("elsewhere/pulumi", PULUMI_SCRIPT)],
    ],
    ids=["dot-dot", "absolute", "nested-dot-dot", "outside-pulumi"],
)
def test_an_archive_with_paths_outside_pulumi_is_refused(
    members: list[tuple[tarfile.TarInfo, bytes | None]], server: ReleaseServer, tmp_path: Path
) -> None:
    sha256 = server.publish(tarball([*members, file_member("pulumi/pulumi", PULUMI_SCRIPT)]))
    tools = tmp_path / "sandbox" / ".tools"
    with pytest.raises(UnsafeArchive, match="outside pulumi/"):
        bootstrap(tools, server, sha256)
    assert not tools.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["sandbox"]


def test_links_and_archives_without_the_cli_are_refused(
    server: ReleaseServer, tmp_path: Path
) -> None:
    link = tarfile.TarInfo("pulumi/pulumi")
    link.type, link.linkname = tarfile.SYMTYPE, "/bin/sh"
    tools = tmp_path / ".tools"
    sha256 = server.publish(tarball([dir_member("pulumi"), (link, None)]))
    with pytest.raises(UnsafeArchive, match="not a file"):
        bootstrap(tools, server, sha256)
    assert not tools.exists()
    sha256 = server.publish(tarball([file_member("pulumi/README", b"no cli", 0o644)]))
    with pytest.raises(UnsafeArchive, match="no pulumi/pulumi executable"):
        bootstrap(tools, server, sha256)
    assert not tools.exists()


# --- when nothing is fetched -------------------------------------------------------------


def test_a_pulumi_on_the_path_is_used_as_is(server: ReleaseServer, tmp_path: Path) -> None:
    own = tmp_path / "bin"
    own.mkdir()
    (own / "pulumi").write_bytes(b"#!/bin/sh\necho mine\n")
    (own / "pulumi").chmod(0o755)
    messages: list[str] = []
    found = ensure_pulumi(
        tmp_path / ".tools",
        search_path=str(own),
        system="Plan9",  # never looked at: nothing to fetch
        machine="mips",
        base_url=server.base_url,
        log=messages.append,
    )
    assert found == own
    assert messages == [f"using the Pulumi CLI on your PATH: {own / 'pulumi'}"]
    assert server.requests == []
    assert not (tmp_path / ".tools").exists()


@pytest.mark.parametrize(("system", "machine"), [("Windows", "AMD64"), ("Linux", "riscv64")])
def test_an_unknown_platform_says_so(
    system: str, machine: str, server: ReleaseServer, tmp_path: Path
) -> None:
    with pytest.raises(UnsupportedPlatform) as refused:
        ensure_pulumi(
            tmp_path / ".tools",
            search_path=str(tmp_path / "empty-path"),
            system=system,
            machine=machine,
            base_url=server.base_url,
            log=lambda _m: None,
        )
    message = str(refused.value)
    assert f"{system} {machine}" in message
    assert "linux-x64" in message  # what is pinned
    assert INSTALL_HELP in message
    assert server.requests == []


@pytest.mark.parametrize(
    ("system", "machine", "key"),
    [
        ("Linux", "x86_64", ("linux", "x64")),
        ("Linux", "aarch64", ("linux", "arm64")),
        ("Darwin", "x86_64", ("darwin", "x64")),
        ("Darwin", "arm64", ("darwin", "arm64")),
    ],
)
def test_the_four_pinned_platforms(system: str, machine: str, key: tuple[str, str]) -> None:
    release = release_for(system, machine)
    assert release.sha256 == RELEASE_SHA256[key]
    assert release.url == (
        f"https://get.pulumi.com/releases/sdk/pulumi-v{PULUMI_VERSION}-{key[0]}-{key[1]}.tar.gz"
    )


# --- the checksums kept in the repository ---------------------------------------------------

# Nix's base32 (nix-prefetch-url output), as NixOS/nixpkgs pkgs/by-name/pu/pulumi-bin/data.nix
# records the 3.220.0 archives (commit c75b830bb6010608aea5f3123627c7582ad4e24c).
NIXPKGS_SHA256 = {
    ("linux", "x64"): "1zs5mpy4rcgv0fadbb6pv95kq75152rpngch676j2n63w2awa03g",
    ("linux", "arm64"): "0sznqiqc5n3y8spdixmp3fb4dcprchcc75mssmb3gk6q8c7yw016",
    ("darwin", "x64"): "1vly2arzfn69a92v5mpf6yc1a15rnc4bh1f20zpcsq7mvfdjrfr1",
    ("darwin", "arm64"): "0pjvlyllqg9pbs2w5am10nza67wwnhbdyhir2zld45zfyak9sbjb",
}
NIX32 = "0123456789abcdfghijklmnpqrsvwxyz"


def nix32_to_bytes(text: str, size: int = 32) -> bytes:
    """Nix's printHash32 reversed: character k holds 5-bit group len-1-k, little-endian."""
    out = bytearray(size)
    for k, char in enumerate(text):
        digit, bit = NIX32.index(char), (len(text) - 1 - k) * 5
        index, shift = divmod(bit, 8)
        out[index] |= (digit << shift) & 0xFF
        if index + 1 < size:
            out[index + 1] |= digit >> (8 - shift)
        else:
            assert digit >> (8 - shift) == 0
    return bytes(out)


def test_the_nix32_conversion_on_a_known_hash() -> None:
    # sha256("") as Nix prints it.
    assert nix32_to_bytes("0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73") == (
        hashlib.sha256(b"").digest()
    )


def test_the_pinned_checksums_are_the_nixpkgs_ones() -> None:
    assert PULUMI_VERSION == "3.220.0"
    assert {k: nix32_to_bytes(v).hex() for k, v in NIXPKGS_SHA256.items()} == dict(RELEASE_SHA256)


# --- the entry the Makefile runs -------------------------------------------------------------


def _entry(args: list[str], path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llm_stack.bootstrap", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path},
        cwd=REPO,
        timeout=60,
    )


@pytest.mark.process
def test_the_entry_prints_the_pulumi_on_the_path(tmp_path: Path) -> None:
    own = tmp_path / "bin"
    own.mkdir()
    (own / "pulumi").write_bytes(b"#!/bin/sh\n")
    (own / "pulumi").chmod(0o755)
    result = _entry(["--tools-dir", str(tmp_path / ".tools")], str(own))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{own}\n"
    assert "using the Pulumi CLI on your PATH" in result.stderr


@pytest.mark.process
def test_the_entry_refuses_an_archive_that_is_not_the_pinned_release(
    server: ReleaseServer, tmp_path: Path
) -> None:
    """Through the real entry and the real pinned checksums: a look-alike is refused."""
    for system, arch in RELEASE_SHA256:  # whichever of them this machine is
        server.publish(release_archive(), name=f"pulumi-v{PULUMI_VERSION}-{system}-{arch}")
    tools = tmp_path / ".tools"
    result = _entry(
        ["--tools-dir", str(tools), "--mirror", server.base_url], str(tmp_path / "no-bin")
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "refusing to install it" in result.stderr
    assert len(server.requests) == 1
    assert not tools.exists()
