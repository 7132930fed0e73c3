"""Encodes or decodes payloads in the AWS KMS format of Temporal's encryption samples.

Reads `{"payloads": [...]}` (protobuf JSON mapping) on stdin and writes the result on stdout.
Format: a fresh KMS data key per payload (GenerateDataKey, AES_256); metadata `encoding` =
`binary/encrypted` and `data_key_encrypted` = base64 of the KMS ciphertext blob (no key id);
data = 12-byte nonce || AES-256-GCM(serialized Payload) with its 16-byte tag, no AAD.
"""

import argparse
import base64
import json
import os
import sys

import boto3
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

NONCE_BYTES = 12


def encode(kms, key_id: str, payload: Payload) -> Payload:
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(data_key["Plaintext"]).encrypt(nonce, payload.SerializeToString(), None)
    return Payload(
        metadata={
            "encoding": b"binary/encrypted",
            "data_key_encrypted": base64.b64encode(data_key["CiphertextBlob"]),
        },
        data=nonce + sealed,
    )


def decode(kms, payload: Payload) -> Payload:
    if payload.metadata.get("encoding") != b"binary/encrypted":
        return payload
    blob = base64.b64decode(payload.metadata["data_key_encrypted"])
    data_key = kms.decrypt(CiphertextBlob=blob)["Plaintext"]
    plaintext = AESGCM(data_key).decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], None)
    return Payload.FromString(plaintext)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operation", choices=["encode", "decode"])
    parser.add_argument("--endpoint", required=True, help="KMS endpoint URL")
    parser.add_argument("--key-id", required=True, help="KMS key for encode")
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args()
    kms = boto3.client(
        "kms",
        endpoint_url=args.endpoint,
        region_name=args.region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )
    payloads = json_format.Parse(sys.stdin.read(), Payloads())
    if args.operation == "encode":
        result = [encode(kms, args.key_id, p) for p in payloads.payloads]
    else:
        result = [decode(kms, p) for p in payloads.payloads]
    print(json_format.MessageToJson(Payloads(payloads=result), indent=None))


if __name__ == "__main__":
    main()
