"""The edge's self-signed certificate, made with the openssl binary.

The certificate is its own CA (clients pass it as `--cacert`/`verify=`). It names
edge.hostname, localhost and 127.0.0.1, is reused while it still covers the same names
and is not about to expire, and its key is 0600 from the moment it exists.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from llm_stack.local.errors import LocalStackError

VALID_DAYS = 30
# Regenerate when the certificate expires within this many seconds.
RENEW_BEFORE_SECONDS = 86400


def subject_alt_names(hostname: str) -> list[str]:
    """`DNS:`/`IP:` entries for the edge hostname, localhost and 127.0.0.1, no duplicates."""
    names: list[str] = []
    for name in (hostname, "localhost", "127.0.0.1"):
        try:
            entry = f"IP:{ipaddress.ip_address(name)}"
        except ValueError:
            entry = f"DNS:{name}"
        if entry not in names:
            names.append(entry)
    return names


def _names_file(cert: Path) -> Path:
    return cert.with_suffix(".names")


def _still_good(openssl: str, cert: Path, key: Path, sans: Sequence[str]) -> bool:
    if not (cert.is_file() and key.is_file()):
        return False
    try:
        if _names_file(cert).read_text() != ",".join(sans):
            return False
    except OSError:
        return False
    check = subprocess.run(
        [openssl, "x509", "-checkend", str(RENEW_BEFORE_SECONDS), "-noout", "-in", str(cert)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return check.returncode == 0


def ensure_certificate(openssl: str, hostname: str, cert: Path, key: Path) -> bool:
    """Make (or keep) the edge certificate and key; True when a new one was made."""
    sans = subject_alt_names(hostname)
    if _still_good(openssl, cert, key, sans):
        return False
    cert.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp_key = key.with_suffix(".key.tmp")
    tmp_cert = cert.with_suffix(".crt.tmp")
    tmp_key.unlink(missing_ok=True)
    # Created 0600 before openssl writes the key into it.
    os.close(os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    argv = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", str(VALID_DAYS), "-subj", f"/CN={hostname}",
        "-addext", "subjectAltName=" + ",".join(sans),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-keyout", str(tmp_key), "-out", str(tmp_cert),
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        tmp_key.unlink(missing_ok=True)
        tmp_cert.unlink(missing_ok=True)
        raise LocalStackError(
            f"openssl could not make the edge certificate: {result.stderr.strip()}",
            "check that `openssl req -x509 -addext ...` works (OpenSSL 1.1.1 or newer)",
        )
    os.chmod(tmp_key, 0o600)
    os.replace(tmp_key, key)
    os.replace(tmp_cert, cert)
    _names_file(cert).write_text(",".join(sans))
    return True
