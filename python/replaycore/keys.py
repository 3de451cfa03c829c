"""Idempotency keys (SPEC section 2), from the selected backend.

* :func:`legacy_key` -- the widely used ``"idem_"`` + 16 hex scheme,
  byte-compatible with existing systems (but ambiguous);
* :func:`key_from_intent` -- a legacy key for an intent and an actor;
* :func:`parse_key` -- validate a legacy key;
* :func:`derive_key` -- the unambiguous scheme for new code: every part is
  hashed with a type tag and a length. Its byte layout is a wire format::

      b"replaycore/derive_key/v1\\n", u32 BE part count, then per part:
      tag byte (0x01 str, 0x02 bytes, 0x03 int), u64 BE length, the bytes
      (UTF-8; raw; two's-complement big-endian in bit_length // 8 + 1 bytes)

  and the key is ``prefix`` + the first ``hex_len`` hex digits of its SHA-256;
* :func:`legacy_keys`, :func:`derive_keys` -- batch forms, GIL released;
* :func:`content_digest` -- ``"sha256:"`` + hex over the canonical encoding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from replaycore._backend import BACKEND

if TYPE_CHECKING or BACKEND == "rust":
    from replaycore._core import (
        content_digest,
        derive_key,
        derive_keys,
        key_from_intent,
        legacy_key,
        legacy_keys,
        parse_key,
    )
else:
    from replaycore.reference.keys import (
        content_digest,
        derive_key,
        derive_keys,
        key_from_intent,
        legacy_key,
        legacy_keys,
        parse_key,
    )

__all__ = [
    "content_digest",
    "derive_key",
    "derive_keys",
    "key_from_intent",
    "legacy_key",
    "legacy_keys",
    "parse_key",
]
