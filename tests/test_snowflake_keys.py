"""Snowflake key loading with real RSA keys generated here by `cryptography`."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from airflow_provider_jetbase.snowflake_keys import PrivateKeyError, load_private_key_der, normalize_pem

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def rsa_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: RSAPrivateKey, passphrase: str | None = None, traditional: bool = False) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption).decode()


def assert_same_key(der: bytes, key: RSAPrivateKey) -> None:
    loaded = serialization.load_der_private_key(der, password=None)
    assert isinstance(loaded, RSAPrivateKey)
    assert loaded.private_numbers() == key.private_numbers()
    # Snowflake wants unencrypted PKCS8 DER: re-serialising in that form must give the same bytes.
    assert der == key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("form", ["pem", "base64", "file"])
def test_every_key_form_decodes_to_the_same_key(
    rsa_key: RSAPrivateKey, tmp_path: Path, form: str, encrypted: bool
) -> None:
    passphrase = PASSPHRASE if encrypted else None
    text = pem(rsa_key, passphrase)
    if form == "pem":
        loaded = load_private_key_der(content=text, passphrase=passphrase)
    elif form == "base64":
        loaded = load_private_key_der(content=base64.b64encode(text.encode()).decode(), passphrase=passphrase)
    else:
        key_file = tmp_path / "rsa_key.p8"
        key_file.write_text(text)
        loaded = load_private_key_der(file=key_file, passphrase=passphrase)
    assert_same_key(loaded.der, rsa_key)
    assert text.strip() in [s.strip() for s in loaded.secrets]
    assert base64.b64encode(loaded.der).decode() in loaded.secrets
    if passphrase:
        assert passphrase in loaded.secrets


def test_traditional_openssl_encrypted_key(rsa_key: RSAPrivateKey) -> None:
    loaded = load_private_key_der(content=pem(rsa_key, PASSPHRASE, traditional=True), passphrase=PASSPHRASE)
    assert_same_key(loaded.der, rsa_key)


@pytest.mark.parametrize("mangle", ["one_line", "spaces", "escaped_newlines"])
def test_pem_pasted_without_line_breaks_is_repaired(rsa_key: RSAPrivateKey, mangle: str) -> None:
    text = pem(rsa_key, PASSPHRASE)
    mangled = {
        "one_line": text.replace("\n", ""),
        "spaces": text.replace("\n", " "),
        "escaped_newlines": text.replace("\n", "\\n"),
    }[mangle]
    assert normalize_pem(mangled).strip() == text.strip()
    assert_same_key(load_private_key_der(content=mangled, passphrase=PASSPHRASE).der, rsa_key)


def test_base64_of_der_is_accepted(rsa_key: RSAPrivateKey) -> None:
    der = rsa_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert_same_key(load_private_key_der(content=base64.b64encode(der).decode()).der, rsa_key)


def test_unencrypted_key_with_optional_passphrase_ignores_it(rsa_key: RSAPrivateKey) -> None:
    loaded = load_private_key_der(
        content=pem(rsa_key), passphrase="leftover-password", passphrase_optional=True
    )
    assert_same_key(loaded.der, rsa_key)


def _error(**kwargs: object) -> PrivateKeyError:
    with pytest.raises(PrivateKeyError) as info:
        load_private_key_der(**kwargs)  # type: ignore[arg-type]
    return info.value


def test_both_sources_is_an_error(rsa_key: RSAPrivateKey, tmp_path: Path) -> None:
    key_file = tmp_path / "k.pem"
    key_file.write_text(pem(rsa_key))
    text = pem(rsa_key)
    err = _error(content=text, file=key_file)
    assert err.field == "private_key_content/private_key_file"
    assert "mutually exclusive" in str(err)
    assert text.splitlines()[1] not in str(err)


def test_wrong_passphrase(rsa_key: RSAPrivateKey) -> None:
    err = _error(content=pem(rsa_key, PASSPHRASE), passphrase="not-the-passphrase")
    assert err.field == "private_key_passphrase"
    assert "wrong passphrase" in str(err)
    assert "not-the-passphrase" not in str(err)


def test_encrypted_key_without_passphrase(rsa_key: RSAPrivateKey) -> None:
    err = _error(content=pem(rsa_key, PASSPHRASE))
    assert err.field == "private_key_passphrase"
    assert "encrypted" in str(err)


def test_explicit_passphrase_for_unencrypted_key(rsa_key: RSAPrivateKey) -> None:
    err = _error(content=pem(rsa_key), passphrase="superfluous-secret")
    assert err.field == "private_key_passphrase"
    assert "not encrypted" in str(err)
    assert "superfluous-secret" not in str(err)


def test_missing_and_empty_key_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    err = _error(file=missing)
    assert err.field == "private_key_file" and "does not exist" in str(err) and str(missing) in str(err)
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    err = _error(file=empty)
    assert err.field == "private_key_file" and "is empty" in str(err)
    err = _error(file=tmp_path)
    assert "not a regular file" in str(err)


def test_invalid_pem(rsa_key: RSAPrivateKey) -> None:
    lines = pem(rsa_key).splitlines()
    broken = "\n".join([lines[0], *lines[1:10], lines[-1]])  # well framed, truncated DER inside
    err = _error(content=broken)
    assert err.field == "private_key_content"
    assert "not a valid PEM private key" in str(err)
    body_line = broken.splitlines()[1]
    assert body_line not in str(err)


def test_garbage_that_is_not_base64() -> None:
    err = _error(content="this is not a key at all!")
    assert err.field == "private_key_content"
    assert "neither a PEM private key" in str(err)
    assert "this is not a key" not in str(err)


def test_base64_that_is_not_a_key() -> None:
    secretish = base64.b64encode(b"just some bytes, not a key").decode()
    err = _error(content=secretish)
    assert err.field == "private_key_content (base64)"
    assert secretish not in str(err)


def test_nothing_given() -> None:
    assert "no private key given" in str(_error())
