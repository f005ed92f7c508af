"""Credentials: argon2 password hashes for people, hashed bearer keys for programs.

API keys are random 256-bit tokens; only their SHA-256 is stored (a fast hash suffices for
random secrets, and a lookup needs it to be deterministic). Passwords get argon2id.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
API_KEY_PREFIX = "ctk_"


def hash_password(password: str) -> str:
    return str(_hasher.hash(password))


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def public_key(prefix: str) -> str:
    """Keys that appear in pages and URLs (merchant ``mk_``, partner ``pk_``)."""
    return prefix + secrets.token_urlsafe(12)
