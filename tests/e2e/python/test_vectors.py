"""Checks samples_codec.py against the Temporal samples codec compatibility vectors."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from pathlib import Path

from cryptography.exceptions import InvalidTag
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from samples_codec import codec_from_base64, is_encrypted

# The repository keeps its own copy of shared/fixtures/samples-codec-vectors.json.
DEFAULT_VECTORS = Path(__file__).resolve().parents[2] / "fixtures" / "samples-codec-vectors.json"


def payload_from_json(value: dict) -> Payload:
    return json_format.ParseDict(value, Payload())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vectors", type=Path, default=DEFAULT_VECTORS, help="path to samples-codec-vectors.json")
    args = parser.parse_args()
    vectors = json.loads(args.vectors.read_text())
    codec = codec_from_base64(vectors["key_id"], vectors["key_base64"])

    failures: list[str] = []
    passed = 0

    def check(name: str, condition: bool, detail: str) -> None:
        nonlocal passed
        if condition:
            passed += 1
        else:
            failures.append(f"{name}: {detail}")

    for case in vectors["sample_codec_cases"]:
        name = case["name"]
        encrypted = payload_from_json(case["encrypted"])
        expected = payload_from_json(case["plaintext"])
        check(name, is_encrypted(encrypted), "vector payload is not marked encrypted")
        decoded = asyncio.run(codec.decode([encrypted]))[0]
        check(name, decoded == expected, "decrypted payload differs from plaintext")
        serialized = base64.b64decode(case["plaintext_serialized_base64"])
        check(name, decoded == Payload.FromString(serialized), "decrypted payload differs from serialized plaintext")
        round_trip = asyncio.run(codec.decode(asyncio.run(codec.encode([expected]))))[0]
        check(name, round_trip == expected, "encode/decode round trip changed the payload")

    for case in vectors["known_answer_vectors"]:
        name = case["name"]
        plaintext = payload_from_json(case["plaintext"])
        encrypted = payload_from_json(case["encrypted"])
        nonce = bytes.fromhex(case["nonce_hex"])
        expected_data = nonce + bytes.fromhex(case["ciphertext_hex"]) + bytes.fromhex(case["tag_hex"])
        check(name, encrypted.data == expected_data, "vector data is not nonce || ciphertext || tag")
        check(
            name,
            plaintext.SerializeToString() == bytes.fromhex(case["plaintext_serialized_hex"]),
            "plaintext does not serialize to the given bytes",
        )
        check(name, codec.decrypt_payload(encrypted) == plaintext, "decrypted payload differs from plaintext")
        reencrypted = codec.encrypt_payload(plaintext, nonce=nonce)
        check(name, reencrypted.data == encrypted.data, "re-encryption with the fixed nonce gave other bytes")
        check(name, dict(reencrypted.metadata) == dict(encrypted.metadata), "re-encrypted metadata differs")

    passthrough = payload_from_json(vectors["sample_codec_cases"][0]["plaintext"])
    check("passthrough", codec.decrypt_payload(passthrough) is passthrough, "non-encrypted payload was altered")

    foreign = payload_from_json(vectors["sample_codec_cases"][0]["encrypted"])
    foreign.metadata["encryption-key-id"] = b"some-other-key"
    try:
        codec.decrypt_payload(foreign)
        check("unknown-key-id", False, "payload with an unknown key id was accepted")
    except ValueError:
        check("unknown-key-id", True, "")

    tampered = payload_from_json(vectors["known_answer_vectors"][0]["encrypted"])
    tampered.data = tampered.data[:-1] + bytes([tampered.data[-1] ^ 1])
    try:
        codec.decrypt_payload(tampered)
        check("tampered-tag", False, "payload with a modified tag was accepted")
    except InvalidTag:
        check("tampered-tag", True, "")

    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print(f"{passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
