#!/usr/bin/env python3
"""Verifies a baton-minted token with PyJWT, an implementation that is not baton's.

Reads one JSON job on stdin:

    {"token": "...", "key_kind": "hmac" | "jwk",
     "secret": "...",            # key_kind "hmac": the secret; its UTF-8 bytes are the key
     "jwk": {...},               # key_kind "jwk": the public JWK
     "algorithms": ["HS256"], "audience": "...", "issuer": "..."}

On success prints {"header": {...}, "payload": {...}} (both verified) and exits 0.
Exit codes: 1 the token does not verify; 2 the job is malformed; 3 PyJWT (or, for
asymmetric keys, `cryptography`) is not installed.
"""

import json
import sys

try:
    import jwt
except ImportError as e:  # pragma: no cover - environment problem, not a test result
    print(f"PyJWT is not installed ({e}); run: pip install 'pyjwt[crypto]'", file=sys.stderr)
    sys.exit(3)


def main() -> int:
    try:
        job = json.load(sys.stdin)
        token = job["token"]
        kind = job["key_kind"]
        algorithms = job["algorithms"]
        audience = job["audience"]
        issuer = job["issuer"]
    except (ValueError, KeyError, TypeError) as e:
        print(f"bad job: {e!r}", file=sys.stderr)
        return 2

    if kind == "hmac":
        key = job["secret"].encode("utf-8")
    elif kind == "jwk":
        try:
            import cryptography  # noqa: F401  (PyJWK needs it for RSA/EC/OKP keys)
        except ImportError as e:
            print(f"cryptography is not installed ({e}); run: pip install 'pyjwt[crypto]'",
                  file=sys.stderr)
            return 3
        try:
            key = jwt.PyJWK(job["jwk"])
        except jwt.exceptions.PyJWKError as e:
            print(f"bad jwk: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
    else:
        print(f"bad job: unknown key_kind {kind!r}", file=sys.stderr)
        return 2

    try:
        decoded = jwt.decode_complete(
            token,
            key=key,
            algorithms=algorithms,
            audience=audience,
            issuer=issuer,
            options={
                "require": ["exp", "iat", "iss", "aud"],
                "verify_signature": True,
                "verify_exp": True,
                "verify_iat": True,
                "verify_aud": True,
                "verify_iss": True,
            },
        )
    except jwt.exceptions.InvalidTokenError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1

    json.dump({"header": decoded["header"], "payload": decoded["payload"]}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
