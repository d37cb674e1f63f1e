"""Generate tests/vectors/alliance/derive_and_labels.json with an independent implementation.

As pyca does for its custom vectors: the values are computed here from ``cryptography``'s HKDF
and AEAD primitives and the byte layout written out by hand from the format description, never
by calling ``alliance_psi``. The tests check ``alliance_psi`` against the committed JSON.
Run: ``.venv/bin/python scripts/gen_alliance_vectors.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "alliance" / "derive_and_labels.json"


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(algorithm=hashes.SHA512(), length=length, info=info).derive(prk)


def lp(text: str) -> bytes:
    encoded = text.encode("utf-8")
    return len(encoded).to_bytes(2, "big") + encoded


def aad_of(key_epoch: str, token: bytes, scope: str, sealer: bytes) -> bytes:
    # "alliance-psi/v2 label" || lp(key_epoch) || match_token || lp(scope) || sealer
    return b"alliance-psi/v2 label" + lp(key_epoch) + token + lp(scope) + sealer


def seal(key: bytes, sealer: bytes, nonce: bytes, plaintext: bytes, key_epoch: str, token: bytes, scope: str) -> bytes:
    # 0x02 || sealer (16) || nonce (12) || ChaCha20-Poly1305(key, nonce, pad(plaintext), aad)
    padded = len(plaintext).to_bytes(2, "big") + plaintext
    padded += bytes(256 - len(padded))
    aad = aad_of(key_epoch, token, scope, sealer)
    return b"\x02" + sealer + nonce + ChaCha20Poly1305(key).encrypt(nonce, padded, aad)


def pseudonym(sealer_key: bytes, scope: str, token: bytes) -> bytes:
    # HMAC-SHA256(sealer_key, "alliance-psi/v2 label-sealer" || lp(scope) || match_token)[:16]
    return hmac.new(sealer_key, b"alliance-psi/v2 label-sealer" + lp(scope) + token, hashlib.sha256).digest()[:16]


def synthetic_nonce(sealer_key: bytes, aad: bytes, plaintext: bytes) -> bytes:
    # HMAC-SHA256(sealer_key, "alliance-psi/v2 label-nonce" || aad || plaintext)[:12]
    return hmac.new(sealer_key, b"alliance-psi/v2 label-nonce" + aad + plaintext, hashlib.sha256).digest()[:12]


def synthetic_vectors(first: dict[str, str]) -> list[dict[str, str]]:
    """The first vector's label sealed by one member in two scopes of its epoch, and by another member."""
    label_key, token = bytes.fromhex(first["label_key"]), bytes.fromhex(first["match_token"])
    plaintext, key_epoch = bytes.fromhex(first["label_plaintext"]), first["key_epoch"]
    out = []
    for member, scope in (
        ("bank-a", f"{key_epoch}/phone/labels"),
        ("bank-a", f"{key_epoch}/id_card,phone/labels"),
        ("bank-b", f"{key_epoch}/phone/labels"),
    ):
        sealer_key = hashlib.sha256(f"nonce key of {member}".encode()).digest()
        sealer = pseudonym(sealer_key, scope, token)
        nonce = synthetic_nonce(sealer_key, aad_of(key_epoch, token, scope, sealer), plaintext)
        out.append(
            {
                "sealer_key": sealer_key.hex(),
                "scope": scope,
                "label_key": first["label_key"],
                "key_epoch": key_epoch,
                "match_token": first["match_token"],
                "label_plaintext": first["label_plaintext"],
                "sealer": sealer.hex(),
                "nonce": nonce.hex(),
                "sealed_label": seal(label_key, sealer, nonce, plaintext, key_epoch, token, scope).hex(),
            }
        )
    return out


def main() -> None:
    vectors = []
    cases = [
        ("phone", '{"c":"proxy_rights_defense","s":"level1"}', "epoch-2026-q4"),
        ("id_card", "", "e1"),
        ("uscc", '{"c":"loan_intermediary","n":"马上消费金融"}', "密钥-第3期"),
    ]
    for i, (name, label, key_epoch) in enumerate(cases):
        oprf_output = hashlib.sha512(f"alliance-psi vector {i} {name}".encode()).digest()
        token = hkdf_expand(oprf_output, b"alliance-psi/v1 match-token", 16)
        label_key = hkdf_expand(oprf_output, b"alliance-psi/v1 label-key", 32)
        nonce = hashlib.sha256(f"nonce {i}".encode()).digest()[:12]
        sealer = hashlib.sha256(f"sealer {i}".encode()).digest()[:16]
        scope = f"{key_epoch}/{name}/labels"
        sealed = seal(label_key, sealer, nonce, label.encode("utf-8"), key_epoch, token, scope)
        vectors.append(
            {
                "oprf_output": oprf_output.hex(),
                "match_token": token.hex(),
                "label_key": label_key.hex(),
                "key_epoch": key_epoch,
                "scope": scope,
                "label_plaintext": label.encode("utf-8").hex(),
                "sealer": sealer.hex(),
                "nonce": nonce.hex(),
                "sealed_label": sealed.hex(),
            }
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "generator": "scripts/gen_alliance_vectors.py",
        "vectors": vectors,
        "synthetic_nonces": synthetic_vectors(vectors[0]),
    }
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(vectors)} vectors and {len(doc['synthetic_nonces'])} synthetic-nonce vectors to {OUT}")


if __name__ == "__main__":
    main()
