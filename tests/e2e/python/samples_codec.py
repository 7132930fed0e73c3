"""AES-256-GCM payload codec in the wire format of Temporal's public encryption samples."""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

ENCRYPTED_ENCODING = b"binary/encrypted"
ENCODING_KEY = "encoding"
KEY_ID_KEY = "encryption-key-id"
NONCE_SIZE = 12
KEY_SIZE = 32


class SamplesEncryptionCodec(PayloadCodec):
    """Wraps each payload as nonce ‖ AES-GCM(serialized original payload) under one key."""

    def __init__(self, key_id: str, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"AES-256 key must be {KEY_SIZE} bytes, got {len(key)}")
        if not key_id:
            raise ValueError("key id must not be empty")
        self.key_id = key_id
        self._aead = AESGCM(key)

    def encrypt_payload(self, payload: Payload, nonce: bytes | None = None) -> Payload:
        """Encrypts one payload; a fixed nonce is only for known-answer tests."""
        if nonce is None:
            nonce = os.urandom(NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
        sealed = self._aead.encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={
                ENCODING_KEY: ENCRYPTED_ENCODING,
                KEY_ID_KEY: self.key_id.encode(),
            },
            data=nonce + sealed,
        )

    def decrypt_payload(self, payload: Payload) -> Payload:
        """Decrypts one payload; payloads that are not ours to decrypt are returned unchanged."""
        if payload.metadata.get(ENCODING_KEY) != ENCRYPTED_ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_KEY, b"").decode()
        if key_id != self.key_id:
            raise ValueError(f"payload encrypted with unknown key id {key_id!r}")
        if len(payload.data) < NONCE_SIZE:
            raise ValueError("encrypted payload is shorter than its nonce")
        nonce, sealed = payload.data[:NONCE_SIZE], payload.data[NONCE_SIZE:]
        original = Payload()
        original.ParseFromString(self._aead.decrypt(nonce, sealed, None))
        return original

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt_payload(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt_payload(payload) for payload in payloads]


def is_encrypted(payload: Payload) -> bool:
    """Whether a payload carries the encrypted encoding and a key id."""
    return (
        payload.metadata.get(ENCODING_KEY) == ENCRYPTED_ENCODING
        and bool(payload.metadata.get(KEY_ID_KEY))
    )


def codec_from_base64(key_id: str, key_base64: str) -> SamplesEncryptionCodec:
    return SamplesEncryptionCodec(key_id, base64.b64decode(key_base64, validate=True))


def encrypting_data_converter(codec: SamplesEncryptionCodec) -> DataConverter:
    """Default converter plus the codec; failure texts move into an encrypted payload as well."""
    return dataclasses.replace(
        DataConverter.default,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )

