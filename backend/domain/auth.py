"""Credentials: argon2 password hashes for people, hashed bearer keys for programs.

API keys are random 256-bit tokens; only their SHA-256 is stored (a fast hash suffices for
random secrets, and a lookup needs it to be deterministic). Passwords get argon2id.
"""

from __future__ import annotations

import hashlib
import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
API_KEY_PREFIX = "ctk_"


def hash_password(password: str) -> str:
    return str(_hasher.hash(password))


@cache
def _no_account_hash() -> str:
    """A hash no password matches, made once, for sign-ins of accounts that do not exist."""
    return hash_password(secrets.token_urlsafe(32))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; ``None`` (no such account) never does, after the same
    argon2 work, so the time of an answer does not tell which accounts exist."""
    checked = _no_account_hash() if password_hash is None else password_hash
    try:
        matches = bool(_hasher.verify(checked, password))
    except (VerificationError, InvalidHashError):
        return False
    return matches and password_hash is not None


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def public_key(prefix: str) -> str:
    """Keys that appear in pages and URLs (merchant ``mk_``, partner ``pk_``)."""
    return prefix + secrets.token_urlsafe(12)
