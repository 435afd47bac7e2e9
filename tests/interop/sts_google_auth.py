#!/usr/bin/env python3
"""Drives one RFC 8693 token exchange with an actor token through google-auth's STS client
(`google.oauth2.sts.Client`), a client library nobody here wrote.

Reads one JSON job on stdin:

    {"endpoint": "http://127.0.0.1:PORT/tokens", "subject_token": "...",
     "subject_token_type": "...", "actor_token": "...", "actor_token_type": "...",
     "audience": "...", "requested_token_type": "..."}

On success prints the endpoint's JSON answer and exits 0. Exit codes: 1 the endpoint
refused (the OAuth error is printed on stderr); 2 the job is malformed; 3 google-auth (or
requests) is not installed.
"""

import json
import sys

try:
    from google.auth import exceptions
    from google.auth.transport.requests import Request
    from google.oauth2 import sts
except ImportError as e:  # pragma: no cover - environment problem, not a test result
    print(f"google-auth is not installed ({e}); run: pip install 'google-auth[requests]'",
          file=sys.stderr)
    sys.exit(3)

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"


def main() -> int:
    try:
        job = json.load(sys.stdin)
        endpoint = job["endpoint"]
        subject_token = job["subject_token"]
        subject_token_type = job["subject_token_type"]
    except (ValueError, KeyError, TypeError) as e:
        print(f"bad job: {e!r}", file=sys.stderr)
        return 2
    client = sts.Client(endpoint)
    try:
        answer = client.exchange_token(
            request=Request(),
            grant_type=GRANT,
            subject_token=subject_token,
            subject_token_type=subject_token_type,
            audience=job.get("audience"),
            requested_token_type=job.get("requested_token_type"),
            actor_token=job.get("actor_token"),
            actor_token_type=job.get("actor_token_type"),
        )
    except exceptions.OAuthError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    json.dump(answer, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
