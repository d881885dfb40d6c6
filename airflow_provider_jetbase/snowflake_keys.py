"""Snowflake key-pair loading: PEM text, base64 of PEM, or a file -> unencrypted PKCS8 DER bytes.

The Snowflake connector takes the key as DER bytes in ``connect_args["private_key"]``, the same
form the official Snowflake provider and Jetbase produce. ``cryptography`` is imported inside the
functions so that importing this module stays cheap.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_jetbase.errors import JetbaseProviderError

PEM_MARKER = b"-----BEGIN"
# A PKCS8 RSA key is ~1.7 KB in PEM; anything far larger is not a key file someone meant to use.
MAX_KEY_FILE_BYTES = 64 * 1024


class PrivateKeyError(JetbaseProviderError, ValueError):
    """A key that cannot be loaded. ``field`` names the setting at fault; the message has no secret."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class LoadedKey:
    der: bytes  # unencrypted PKCS8 DER
    secrets: tuple[str, ...]  # every textual form of the key material and passphrase seen while loading


def load_private_key_der(
    *,
    content: str | bytes | None = None,
    file: str | os.PathLike[str] | None = None,
    passphrase: str | None = None,
    content_field: str = "private_key_content",
    file_field: str = "private_key_file",
    passphrase_field: str = "private_key_passphrase",
    passphrase_optional: bool = False,
) -> LoadedKey:
    """Load a private key from exactly one of ``content`` / ``file``.

    ``content`` is PEM text or base64 of PEM (or of DER). ``passphrase_optional`` is for a
    passphrase taken from a field that has another meaning too (the Snowflake password field):
    it is then ignored when the key is not encrypted instead of being an error.
    The ``*_field`` names only label errors.
    """
    if content and file:
        raise PrivateKeyError(
            f"{content_field}/{file_field}",
            f"{content_field} and {file_field} are both set; they are mutually exclusive, remove one",
        )
    secrets: list[str] = []
    if passphrase:
        secrets.append(passphrase)
    if content:
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        secrets.append(text)
        key_bytes, field, decoded_text = _bytes_from_content(text, content_field)
        if decoded_text:
            secrets.append(decoded_text)
    elif file:
        key_bytes = _read_key_file(Path(file), file_field)
        field = file_field
        secrets.append(key_bytes.decode("utf-8", "replace"))
    else:
        raise PrivateKeyError(content_field, f"no private key given ({content_field} or {file_field})")

    der = _to_der(key_bytes, field, passphrase, passphrase_field, passphrase_optional)
    secrets.extend((base64.b64encode(der).decode("ascii"), der.hex()))
    return LoadedKey(der=der, secrets=tuple(s for s in secrets if s))


def _bytes_from_content(text: str, field: str) -> tuple[bytes, str, str | None]:
    stripped = text.strip()
    if PEM_MARKER.decode() in stripped:
        return normalize_pem(stripped).encode("utf-8"), field, None
    compact = "".join(stripped.split())
    try:
        decoded = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise PrivateKeyError(
            field, f"{field} is neither a PEM private key (-----BEGIN ... PRIVATE KEY-----) nor base64 of one"
        ) from None
    if not decoded:
        raise PrivateKeyError(field, f"{field} is empty")
    if decoded.lstrip().startswith(PEM_MARKER):
        decoded_text = normalize_pem(decoded.decode("utf-8", "replace"))
        return decoded_text.encode("utf-8"), f"{field} (base64)", decoded_text
    return decoded, f"{field} (base64)", None


_PEM_BLOCK = re.compile(r"(-----BEGIN [A-Z0-9 ]+-----)(.*?)(-----END [A-Z0-9 ]+-----)", re.DOTALL)


def normalize_pem(text: str) -> str:
    """Repair PEM text whose line breaks were lost or escaped.

    Password inputs (Airflow's UI), env files and JSON often turn the newlines into spaces, nothing,
    or a literal ``\\n``; the body is re-wrapped in 64-character lines as PEM requires.
    """
    text = text.replace("\\r\\n", "\n").replace("\\n", "\n").strip()
    match = _PEM_BLOCK.search(text)
    if not match:
        return text
    begin, body, end = match.groups()
    if ":" in body:  # RFC 1421 headers (Proc-Type/DEK-Info): keep the layout the user gave
        return text
    compact = "".join(body.split())
    lines = [compact[i : i + 64] for i in range(0, len(compact), 64)]
    return "\n".join([begin, *lines, end]) + "\n"


def _read_key_file(path: Path, field: str) -> bytes:
    # The path is configuration, not a secret: naming it helps the user find the fault.
    if not path.exists():
        raise PrivateKeyError(field, f"{field} '{path}' does not exist")
    if not path.is_file():
        raise PrivateKeyError(field, f"{field} '{path}' is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise PrivateKeyError(field, f"{field} '{path}' is empty")
    if size > MAX_KEY_FILE_BYTES:
        raise PrivateKeyError(field, f"{field} '{path}' is {size} bytes: too big to be a private key")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PrivateKeyError(field, f"{field} '{path}' cannot be read ({exc.strerror})") from None


def _looks_encrypted(key_bytes: bytes) -> bool:
    head = key_bytes.lstrip()[:200]
    return head.startswith(PEM_MARKER) and b"ENCRYPTED" in head


def _to_der(
    key_bytes: bytes, field: str, passphrase: str | None, passphrase_field: str, passphrase_optional: bool
) -> bytes:
    from cryptography.hazmat.primitives import serialization

    is_pem = key_bytes.lstrip().startswith(PEM_MARKER)
    encrypted = _looks_encrypted(key_bytes)
    if is_pem and not encrypted and passphrase:
        if not passphrase_optional:
            raise PrivateKeyError(
                passphrase_field, f"{passphrase_field} is set but the key in {field} is not encrypted"
            )
        passphrase = None
    if encrypted and not passphrase:
        raise PrivateKeyError(
            passphrase_field,
            f"the key in {field} is encrypted but no passphrase was given ({passphrase_field})",
        )
    password = passphrase.strip().encode("utf-8") if passphrase else None
    try:
        if is_pem:
            key = serialization.load_pem_private_key(key_bytes, password=password)
        else:
            key = serialization.load_der_private_key(key_bytes, password=password)
    except TypeError as exc:
        # Raised for an encrypted/unencrypted mismatch the header check did not predict.
        if "not encrypted" in str(exc):
            raise PrivateKeyError(
                passphrase_field, f"{passphrase_field} is set but the key in {field} is not encrypted"
            ) from None
        raise PrivateKeyError(
            passphrase_field,
            f"the key in {field} is encrypted but no passphrase was given ({passphrase_field})",
        ) from None
    except ValueError:
        if encrypted:
            raise PrivateKeyError(
                passphrase_field, f"wrong passphrase ({passphrase_field}) for the encrypted key in {field}"
            ) from None
        what = "a valid PEM private key" if is_pem else "a PEM (or DER) private key"
        raise PrivateKeyError(field, f"{field} is not {what}") from None
    except Exception as exc:  # noqa: BLE001 - unsupported algorithm etc.: never echo key material
        raise PrivateKeyError(field, f"{field} cannot be loaded ({type(exc).__name__})") from None
    return key.private_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
