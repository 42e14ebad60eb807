"""PyJWT's decoder with its base64url segment check done in C.

Why: PyJWT 2.15 checks that each of a token's three segments holds only base64url characters with a
Python generator over every byte (its fix for GHSA-hxm8-2xgr-2p9m). An RS384 token of a CDS call has
about 650 such bytes, so that loop took 26 us of the 66 us ``jwt.decode`` needed in a tight loop, and
the loaded server, whose caches hold the rest of the call, paid 2-3 times as much. Every CDS Hooks call
carries a fresh token, so this is paid on every call.

What stays the same: everything. :class:`LeanJWT` is PyJWT's own ``PyJWT`` class (claims, algorithms,
signature) with one helper replaced. That helper decodes a segment itself only in the common case: no
padding, nothing outside the base64url alphabet (one regular expression), a length PyJWT accepts, and
an encoding that is canonical (it re-encodes to the same text, as PyJWT requires). Every other segment
(padded, junk, non-canonical) goes to PyJWT's own helper, which accepts it or raises its own
``DecodeError`` as before. ``tests/service/test_jws.py`` runs both helpers on generated segments and
requires the same bytes or the same refusal, and decodes real and tampered tokens with both.

Both replaced names are private to PyJWT (the segment helper and the ``_jws`` attribute), so the
version is pinned in pyproject.toml and the test fails loudly if a new PyJWT moves them.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import jwt

_UNPADDED_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*")
_ORIGINAL = jwt.PyJWS._decode_base64url_segment


def decode_segment(segment: bytes, name: str) -> bytes:
    """The bytes PyJWT's ``PyJWS._decode_base64url_segment`` gives for ``segment``, or its ``DecodeError``."""
    if len(segment) % 4 != 1 and _UNPADDED_BASE64URL.fullmatch(segment) is not None:
        decoded = base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
        if base64.urlsafe_b64encode(decoded).rstrip(b"=") == segment:
            return decoded
    return _ORIGINAL(segment, name)


class LeanJWS(jwt.PyJWS):
    _decode_base64url_segment = staticmethod(decode_segment)  # type: ignore[assignment]


class LeanJWT(jwt.PyJWT):
    """``jwt.PyJWT`` whose signature layer is :class:`LeanJWS`; ``decode`` is PyJWT's own."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        if not isinstance(getattr(self, "_jws", None), jwt.PyJWS):
            raise RuntimeError("this PyJWT keeps no PyJWS in _jws: update ipexrx.service.jws for it")
        self._jws = LeanJWS(options=self._get_sig_options())


_DECODER = LeanJWT()
decode = _DECODER.decode
