from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from tests.pki import foreign_cert_set, make_cert_set, rsa_key, spki_base64
from verify.certs import (
    cert_sn,
    certificate_public_key,
    is_expired,
    load_certificates,
    root_cert_sn,
    verify_chain,
)
from verify.errors import CertificateChainError, KeyMaterialError
from verify.keys import public_key_base64

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
GOPAY = VECTORS / "more" / "certs_gopay_2019"


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _certs(path: Path) -> list[x509.Certificate]:
    return load_certificates(path.read_bytes())


# --- real Alipay certificates ---

NODE_SN = _json(VECTORS / "cert_sn.json")
GOPAY_SN = _json(GOPAY / "cert_sn.json")


@pytest.mark.parametrize(
    ("folder", "expected", "entry"),
    [
        (VECTORS, NODE_SN, "app_cert_sn"),
        (VECTORS, NODE_SN, "alipay_cert_sn"),
        (GOPAY, GOPAY_SN, "app_cert_sn"),
        (GOPAY, GOPAY_SN, "alipay_cert_sn"),
    ],
    ids=["node-app", "node-alipay", "gopay-app", "gopay-alipay-2-certs"],
)
def test_real_cert_sn_of_first_certificate(folder: Path, expected: Any, entry: str) -> None:
    certs = _certs(folder / expected[entry]["file"])
    assert cert_sn(certs[0]) == expected[entry]["expected"]


def test_known_answers_from_the_readme() -> None:
    assert cert_sn(_certs(VECTORS / "appCertPublicKey_2021001161683774.crt")[0]) == (
        "866efef280dec9137a87d047ac446315"
    )
    assert cert_sn(_certs(VECTORS / "alipayCertPublicKey_RSA2.crt")[0]) == (
        "7513daaaa48aa3ba2e4018d84402479c"
    )
    assert root_cert_sn((VECTORS / "alipayRootCert.crt").read_bytes()) == (
        "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6"
    )


def test_gopay_second_certificate_is_not_the_sn() -> None:
    certs = _certs(GOPAY / "alipayCertPublicKey_RSA2.crt")
    assert len(certs) == 2
    assert cert_sn(certs[1]) == "d04725290cc29a7f216e0b31e5897f69"


@pytest.mark.parametrize("folder", [VECTORS, GOPAY], ids=["node", "gopay"])
def test_real_root_cert_sn(folder: Path) -> None:
    expected = _json(folder / "cert_sn.json")["alipay_root_cert_sn"]["expected"]
    assert root_cert_sn((folder / "alipayRootCert.crt").read_bytes()) == expected


def test_real_root_bundle_skips_the_unparseable_ecdsa_block() -> None:
    pem = (VECTORS / "alipayRootCert.crt").read_bytes()
    assert pem.count(b"-----BEGIN CERTIFICATE-----") == 4
    subjects = [
        c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        for c in _certs(VECTORS / "alipayRootCert.crt")
    ]
    assert "ROOTCA" in subjects  # the SM2 root parses; it is skipped by the SN rule instead
    assert "Ant Financial Certification Authority R1" in subjects


def test_real_alipay_certificate_public_key() -> None:
    cert = _certs(VECTORS / "alipayCertPublicKey_RSA2.crt")[0]
    expected = NODE_SN["alipay_cert_public_key"]["expected"]
    assert public_key_base64(certificate_public_key(cert)) == expected


def test_sm2_root_public_key_is_refused() -> None:
    sm2 = _certs(VECTORS / "alipayRootCert.crt")[0]
    assert sm2.signature_algorithm_oid.dotted_string.startswith("1.2.156.")
    with pytest.raises(KeyMaterialError):
        certificate_public_key(sm2)


def test_real_gopay_chain_reaches_the_r1_root() -> None:
    chain = _certs(GOPAY / "alipayCertPublicKey_RSA2.crt")
    verify_chain(chain, _certs(GOPAY / "alipayRootCert.crt"))


def test_real_node_leaf_without_intermediate_does_not_chain() -> None:
    chain = _certs(VECTORS / "alipayCertPublicKey_RSA2.crt")
    with pytest.raises(CertificateChainError) as info:
        verify_chain(chain, _certs(VECTORS / "alipayRootCert.crt"))
    assert info.value.code == "invalid_certificate"


def test_real_leaves_are_expired_now_but_sn_does_not_care() -> None:
    leaf = _certs(VECTORS / "alipayCertPublicKey_RSA2.crt")[0]
    assert is_expired(leaf, datetime(2026, 1, 1, tzinfo=UTC))
    assert not is_expired(leaf, datetime(2021, 1, 1, tzinfo=UTC))


# --- generated hierarchy (tests/pki.py) ---


def test_generated_sns_match_independent_computation() -> None:
    cs = make_cert_set()
    assert cert_sn(load_certificates(cs.alipay_cert_pem)[0]) == cs.alipay_cert_sn
    assert cert_sn(load_certificates(cs.app_cert_pem)[0]) == cs.app_cert_sn
    assert root_cert_sn(cs.root_bundle_pem) == cs.root_cert_sn  # the EC root is skipped


def test_generated_chain_verifies_and_foreign_one_does_not() -> None:
    cs, foreign = make_cert_set(), foreign_cert_set()
    roots = load_certificates(cs.root_bundle_pem)
    verify_chain(load_certificates(cs.alipay_cert_pem), roots)
    with pytest.raises(CertificateChainError):
        verify_chain(load_certificates(foreign.alipay_cert_pem), roots)
    with pytest.raises(CertificateChainError):  # same DNs, other keys: refused by signature
        verify_chain(
            load_certificates(cs.alipay_cert_pem), load_certificates(foreign.root_bundle_pem)
        )


def test_generated_leaf_key_is_the_certificate_key() -> None:
    cs = make_cert_set()
    key = certificate_public_key(load_certificates(cs.alipay_cert_pem)[0])
    assert public_key_base64(key) == spki_base64(cs.alipay_leaf_key.public_key())


def test_ec_certificate_public_key_is_refused() -> None:
    ec_root = load_certificates(make_cert_set().root_bundle_pem)[0]
    with pytest.raises(KeyMaterialError) as info:
        certificate_public_key(ec_root)
    assert info.value.code == "invalid_key"


def test_root_itself_is_trusted() -> None:
    roots = load_certificates(make_cert_set().root_bundle_pem)
    verify_chain([roots[1]], roots)


def test_empty_chain_is_refused() -> None:
    with pytest.raises(CertificateChainError):
        verify_chain([], load_certificates(make_cert_set().root_bundle_pem))


def test_no_roots_is_refused() -> None:
    with pytest.raises(CertificateChainError):
        verify_chain(load_certificates(make_cert_set().alipay_cert_pem), [])


def _make_cert(
    cn: str, issuer: x509.Certificate | None, *, ca: bool, key_index: int = 7
) -> x509.Certificate:
    """A certificate signed by rsa_key(key_index) (all levels share it: names differ)."""
    key = rsa_key(key_index)
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def _ladder(steps: int) -> tuple[list[x509.Certificate], x509.Certificate]:
    """A chain whose leaf is ``steps`` issuer links below the root: (chain, root)."""
    root = _make_cert("root", None, ca=True)
    issuers = [root]
    for level in range(steps - 1):
        issuers.append(_make_cert(f"ca-{level}", issuers[-1], ca=True))
    leaf = _make_cert("leaf", issuers[-1], ca=False)
    return [leaf, *reversed(issuers[1:])], root


def test_five_steps_is_the_limit() -> None:
    chain, root = _ladder(5)
    verify_chain(chain, [root])
    chain, root = _ladder(6)
    with pytest.raises(CertificateChainError):
        verify_chain(chain, [root])


def test_intermediates_may_come_in_any_order() -> None:
    chain, root = _ladder(3)
    verify_chain([chain[0], *reversed(chain[1:])], [root])


def test_non_ca_certificate_cannot_issue() -> None:
    """A merchant's own leaf (chains to the root) must not vouch for a forged Alipay cert."""
    cs = make_cert_set()
    leaf, class2 = load_certificates(cs.alipay_cert_pem)
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")]))
        .issuer_name(leaf.subject)
        .public_key(rsa_key(3).public_key())
        .serial_number(1)
        .not_valid_before(datetime.now(UTC))
        .not_valid_after(datetime.now(UTC) + timedelta(days=1))
        .sign(cs.alipay_leaf_key, hashes.SHA256())
    )
    forged.verify_directly_issued_by(leaf)  # the signature itself is fine
    with pytest.raises(CertificateChainError):
        verify_chain([forged, leaf, class2], load_certificates(cs.root_bundle_pem))


def test_load_certificates_skips_bad_blocks_in_order() -> None:
    cs = make_cert_set()
    junk = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\nnoise\n"
    certs = load_certificates(junk + cs.alipay_cert_pem + junk + cs.app_cert_pem)
    assert [cert_sn(c) for c in certs[::2]] == [cs.alipay_cert_sn, cs.app_cert_sn]
    assert len(certs) == 3
    assert load_certificates(b"not a pem file") == []


@pytest.mark.parametrize(
    "pem",
    [b"", b"garbage", b"ec-only"],
    ids=["empty", "garbage", "no-rsa-certificate"],
)
def test_root_cert_sn_without_rsa_certificate(pem: bytes) -> None:
    if pem == b"ec-only":
        pem = make_cert_set().root_bundle_pem.split(b"-----END CERTIFICATE-----")[0]
        pem += b"-----END CERTIFICATE-----\n"
    with pytest.raises(KeyMaterialError):
        root_cert_sn(pem)


def test_is_expired_boundaries() -> None:
    cert = load_certificates(make_cert_set().app_cert_pem)[0]
    end = cert.not_valid_after_utc
    assert not is_expired(cert, end)
    assert is_expired(cert, end + timedelta(seconds=1))
    assert not is_expired(cert, end.astimezone().replace(microsecond=0) - timedelta(days=1))


def test_is_expired_needs_an_aware_datetime() -> None:
    cert = load_certificates(make_cert_set().app_cert_pem)[0]
    with pytest.raises(ValueError, match="timezone-aware"):
        is_expired(cert, datetime(2030, 1, 1))
