"""Replica names as Kubernetes gives pods of a Deployment: `<endpoint>-<template hash>-<5 chars>`.

The hash is of the replica template (model, resources, batching), so it changes exactly when a
rollout is needed, and `get pods` shows which replicas are old and which new.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""Kubernetes' alphabet for generated names: no vowels (no words), no look-alike characters."""

HASH_LENGTH = 10
SUFFIX_LENGTH = 5


def template_hash(template: Any) -> str:
    """A stable 10-character hash of any JSON-serializable template."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True, default=str).encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    characters = []
    for _ in range(HASH_LENGTH):
        number, index = divmod(number, len(SAFE_ALPHABET))
        characters.append(SAFE_ALPHABET[index])
    return "".join(characters)


def replica_name(endpoint: str, hash_text: str, rng: random.Random) -> str:
    """`my-model-endpoint-5f7d8c9f7f-abcde`."""
    suffix = "".join(rng.choice(SAFE_ALPHABET) for _ in range(SUFFIX_LENGTH))
    return f"{endpoint}-{hash_text}-{suffix}"
