"""The alliance PKI on disk: the CA, issued certificates and the CRL as PEM files.

Writes are atomic (a temporary file in the same directory, then a rename), so a reader never sees
a half-written file. Private keys are written with mode 0600, the rest with 0644; a pair is never
overwritten unless the caller forces it. ``services.pki`` re-exports every name here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alliance_psi._files import already_exists, read_secret, write_file_atomic
from alliance_psi.errors import ConfigurationError

if TYPE_CHECKING:
    from alliance_psi.services.pki import CertificateAuthority, IssuedCertificate

__all__ = ["CA_CERT_FILE", "CA_KEY_FILE", "CRL_FILE", "load_ca", "write_ca", "write_crl", "write_issued"]

CA_CERT_FILE, CA_KEY_FILE, CRL_FILE = "ca.pem", "ca.key", "crl.pem"


def write_ca(ca: CertificateAuthority, directory: Path | str, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``ca.pem`` and ``ca.key`` (mode 0600) atomically; refuse to overwrite unless ``force``."""
    return _write_pair(Path(directory), "ca", ca.cert_pem, ca.key_pem, force=force)


def write_issued(
    cert: IssuedCertificate, directory: Path | str, name: str, *, force: bool = False
) -> tuple[Path, Path]:
    """Write ``NAME.pem`` and ``NAME.key`` (mode 0600) atomically; refuse to overwrite unless ``force``."""
    # services.pki imports this module, so its names are imported when first needed.
    from alliance_psi.services.pki import validate_name

    return _write_pair(Path(directory), validate_name(name), cert.cert_pem, cert.key_pem, force=force)


def write_crl(crl_pem: bytes, path: Path | str) -> Path:
    """Write (or atomically replace) a CRL file."""
    path = Path(path)
    write_file_atomic(path, crl_pem, private=False, replace=True)
    return path


def load_ca(directory: Path | str) -> CertificateAuthority:
    """Read ``ca.pem`` and ``ca.key`` from ``directory`` and check they belong together.

    Raises:
        ConfigurationError: a file is missing or unreadable, or the key does not match the certificate.
    """
    from alliance_psi.services.pki import CertificateAuthority, _load_ca_objects  # See write_issued.

    directory = Path(directory)
    pems = []
    for file_name in (CA_CERT_FILE, CA_KEY_FILE):
        path = directory / file_name
        try:
            pems.append(read_secret(path, what="CA key") if file_name == CA_KEY_FILE else path.read_bytes())
        except OSError as exc:
            raise ConfigurationError(f"cannot read CA file {path}: {exc.strerror}") from None
    ca = CertificateAuthority(cert_pem=pems[0], key_pem=pems[1])
    _load_ca_objects(ca)
    return ca


def _write_pair(directory: Path, stem: str, cert_pem: bytes, key_pem: bytes, *, force: bool) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    # Check both first, so a refusal never leaves one half of the pair written.
    for path in (cert_path, key_path):
        if path.exists() and not force:
            raise already_exists(path)
    directory.mkdir(parents=True, exist_ok=True)
    write_file_atomic(key_path, key_pem, private=True, replace=force)
    write_file_atomic(cert_path, cert_pem, private=False, replace=force)
    return cert_path, key_path
