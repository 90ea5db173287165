"""Standard Webhooks signing and verification, against the specification's published vectors."""

from __future__ import annotations

import pytest

from fleetpulse.common import webhooks
from fleetpulse.common.webhooks import WebhookVerificationError, sign, signature_headers, verify

# Published by standard-webhooks/standard-webhooks (libraries/*/tests, the shared test vector).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def vector_headers() -> dict[str, str]:
    return {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }


def test_sign_matches_the_published_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_secret_without_prefix_signs_the_same() -> None:
    bare = VECTOR_SECRET.removeprefix("whsec_")
    assert sign(bare, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_published_vector_verifies() -> None:
    verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP + 10)


def test_header_names_are_case_insensitive() -> None:
    headers = {key.title(): value for key, value in vector_headers().items()}
    verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_one_matching_signature_among_several_is_enough() -> None:
    headers = vector_headers()
    headers["webhook-signature"] = " ".join(
        [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            VECTOR_SIGNATURE,
            "v1,not-base64!",
        ]
    )
    verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_fails(missing: str) -> None:
    headers = vector_headers()
    del headers[missing]
    with pytest.raises(WebhookVerificationError):
        verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_published_invalid_signature_fails() -> None:
    headers = vector_headers()
    headers["webhook-signature"] = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
    with pytest.raises(WebhookVerificationError, match="no matching"):
        verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP)


@pytest.mark.parametrize("timestamp", ["hello", "1614265330.5", "-1614265330", ""])
def test_malformed_timestamp_fails(timestamp: str) -> None:
    headers = vector_headers()
    headers["webhook-timestamp"] = timestamp
    with pytest.raises(WebhookVerificationError):
        verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP)


@pytest.mark.parametrize("offset", [-301, 301])
def test_timestamp_outside_tolerance_fails(offset: int) -> None:
    with pytest.raises(WebhookVerificationError, match="too"):
        verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP - offset)


def test_timestamp_at_tolerance_edge_passes() -> None:
    verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP + 300)


def test_a_reformatted_body_fails() -> None:
    with pytest.raises(WebhookVerificationError):
        verify(VECTOR_SECRET, vector_headers(), b'{"test":2432232314}', now=VECTOR_TIMESTAMP)


def test_raw_bytes_that_are_not_utf8_round_trip() -> None:
    secret = webhooks.generate_secret()
    body = b"\xff\xfe raw \x00 bytes"
    headers = signature_headers(secret, "msg_1", 1_700_000_000, body)
    verify(secret, headers, body, now=1_700_000_000)
    with pytest.raises(WebhookVerificationError):
        verify(webhooks.generate_secret(), headers, body, now=1_700_000_000)


def test_generated_secret_has_prefix_and_32_bytes() -> None:
    import base64

    secret = webhooks.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


def test_public_names() -> None:
    assert set(webhooks.__all__) == {
        "DEFAULT_TOLERANCE_S",
        "SECRET_PREFIX",
        "WebhookVerificationError",
        "generate_secret",
        "headers_owner",
        "secret_owner",
        "sign",
        "signature_headers",
        "verify",
    }
