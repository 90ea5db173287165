"""SecretBox and sealed mappings: pure logic, no I/O."""

from __future__ import annotations

import pytest

from fleetpulse.common.crypto import SealError, SecretBox, open_values, seal_values

KEY = SecretBox.generate_key()


def test_a_sealed_value_opens_only_with_its_key_and_owner() -> None:
    box = SecretBox(KEY)
    sealed = box.seal("whsec_x", "t1:int_1")
    assert sealed.startswith("v1.") and "whsec_x" not in sealed
    assert box.open(sealed, "t1:int_1") == "whsec_x"
    with pytest.raises(SealError):
        box.open(sealed, "t2:int_1")
    with pytest.raises(SealError):
        SecretBox(SecretBox.generate_key()).open(sealed, "t1:int_1")
    with pytest.raises(SealError, match="format"):
        box.open("whsec_x", "t1:int_1")


@pytest.mark.parametrize("key", ["not base64!", "c2hvcnQ="])
def test_a_bad_key_is_refused_with_the_reason(key: str) -> None:
    with pytest.raises(ValueError, match=r"base64|32 bytes"):
        SecretBox(key)


def test_mapping_values_round_trip_and_each_is_bound_to_its_name() -> None:
    box = SecretBox(KEY)
    headers = {"Authorization": "Bearer abc", "X-Team": "ops"}
    sealed = seal_values(box, headers, "t1:int_1:headers")
    assert set(sealed) == set(headers)
    assert not any(value in str(sealed) for value in headers.values())
    assert open_values(box, sealed, "t1:int_1:headers") == headers
    swapped = {"Authorization": sealed["X-Team"], "X-Team": sealed["Authorization"]}
    with pytest.raises(SealError, match=r"^Authorization: "):
        open_values(box, swapped, "t1:int_1:headers")
    with pytest.raises(SealError):
        open_values(box, sealed, "t1:int_2:headers")
