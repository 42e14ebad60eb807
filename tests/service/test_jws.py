"""service/jws.py: PyJWT's decoder with the segment check in C gives exactly PyJWT's answers."""

from __future__ import annotations

import base64
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from ipexrx.service import jws

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_JUNK = "=+/. !\n\x00é"


def _pyjwt(segment: bytes) -> bytes | str:
    try:
        return jwt.PyJWS._decode_base64url_segment(segment, "payload")
    except jwt.DecodeError as exc:
        return f"DecodeError: {exc}"


def _lean(segment: bytes) -> bytes | str:
    try:
        return jws.decode_segment(segment, "payload")
    except jwt.DecodeError as exc:
        return f"DecodeError: {exc}"


segments = st.one_of(
    st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")),  # canonical, unpadded
    st.binary(max_size=40).map(base64.urlsafe_b64encode),  # canonical, padded
    st.text(alphabet=ALPHABET, max_size=40).map(str.encode),  # any length, may be non-canonical
    st.text(alphabet=ALPHABET + _JUNK, max_size=40).map(lambda s: s.encode("utf-8")),  # junk mixed in
)


@settings(max_examples=2000, deadline=None)
@given(segments)
def test_every_segment_decodes_to_the_same_bytes_or_the_same_refusal_as_pyjwt(segment: bytes) -> None:
    assert _lean(segment) == _pyjwt(segment)


@pytest.mark.parametrize("segment", [b"", b"QQ", b"QR", b"QUI", b"QUJ", b"Q", b"QUJD", b"QUJD=", b"QQ==", b"QQ=",
                                     b"QQ===", b"QU+D", b"QU/D", b"!!!!", b"QUJD\n", b"Q\x00UJ"])
def test_edge_segments_get_pyjwts_answer(segment: bytes) -> None:
    assert _lean(segment) == _pyjwt(segment)


@pytest.fixture(scope="module")
def keys() -> dict[str, object]:
    return {"RS384": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ES384": ec.generate_private_key(ec.SECP384R1())}


def _claims() -> dict[str, object]:
    now = int(time.time())
    return {"iss": "https://ehr.example.org", "aud": "https://cds.example.org/cds-services/x", "iat": now,
            "exp": now + 300, "jti": "j-1", "nested": {"a": [1, 2, "ü"]}}


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_real_tokens_decode_to_the_same_claims_as_with_pyjwt(keys: dict[str, object], alg: str) -> None:
    key = keys[alg]
    claims = _claims()
    token = jwt.encode(claims, key, algorithm=alg, headers={"kid": "k"})  # type: ignore[arg-type]
    kwargs = {"key": key.public_key(), "algorithms": [alg],  # type: ignore[attr-defined]
              "audience": "https://cds.example.org/cds-services/x", "issuer": "https://ehr.example.org"}
    assert jws.decode(token, **kwargs) == jwt.decode(token, **kwargs) == claims


def _tampered(token: str) -> list[str]:
    head, body, sig = token.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    return [
        f"{head}.{flipped}.{sig}",  # payload changed: the signature no longer matches
        f"{head}.{body}=.{sig}",  # padding where the length needs none
        f"{head}.{body}.{sig}!",  # junk in the signature
        f"{head}.{body[:-1]}.{sig}",  # payload cut to a length base64 cannot have (or a different payload)
        f"{head}.{body}",  # a segment missing
        f"{head}.{body}.{sig}.x",  # a segment too many
        f"{head}.{body}.{sig[:-4]}",  # signature cut
    ]


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_tampered_tokens_are_refused_with_the_same_error_as_by_pyjwt(keys: dict[str, object], alg: str) -> None:
    key = keys[alg]
    token = jwt.encode(_claims(), key, algorithm=alg)  # type: ignore[arg-type]
    kwargs = {"key": key.public_key(), "algorithms": [alg],  # type: ignore[attr-defined]
              "audience": "https://cds.example.org/cds-services/x", "issuer": "https://ehr.example.org"}
    for bad in _tampered(token):
        with pytest.raises(jwt.PyJWTError) as theirs:
            jwt.decode(bad, **kwargs)
        with pytest.raises(jwt.PyJWTError) as ours:
            jws.decode(bad, **kwargs)
        assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value)), bad


def test_the_decoder_in_use_is_pyjwts_class_with_only_the_segment_helper_replaced() -> None:
    assert isinstance(jws._DECODER, jwt.PyJWT) and isinstance(jws._DECODER._jws, jwt.PyJWS)
    assert jws._DECODER._jws._decode_base64url_segment is jws.decode_segment
    assert jws._ORIGINAL is not jws.decode_segment  # the fallback is PyJWT's own helper, not ours
