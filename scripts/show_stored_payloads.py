"""Prints the input and result payloads of a history exported by `temporal workflow show --output json`."""

import base64
import json
import sys


def main() -> None:
    history = json.load(sys.stdin)
    for event in history["events"]:
        for name, attributes in event.items():
            if not name.endswith("EventAttributes"):
                continue
            for field in ("input", "result"):
                for payload in (attributes.get(field) or {}).get("payloads", []):
                    metadata = {k: base64.b64decode(v).decode() for k, v in payload["metadata"].items()}
                    ciphertext = payload.get("data", "")[:48]
                    print(f"  {event['eventType']} {field}: {metadata} data={ciphertext}...")


if __name__ == "__main__":
    main()
