"""Ingest settings: the subscription mode is checked at start, without I/O."""

from __future__ import annotations

import pytest

from fleetpulse.common.errors import ConfigurationError
from fleetpulse.common.settings import load_settings
from fleetpulse.ingest.mqtt_source import subscription_filter
from fleetpulse.ingest.settings import Settings

BASE = {"FLEETPULSE_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x"}


async def settings(**env: str) -> Settings:
    return await load_settings(Settings, {**BASE, **env})


async def test_default_is_the_shared_group() -> None:
    loaded = await settings()
    assert subscription_filter(loaded.mqtt_share_group) == "$share/ingest/tenant/+/device/+/#"


async def test_empty_group_with_one_connection_is_a_plain_subscription() -> None:
    loaded = await settings(FLEETPULSE_MQTT_SHARE_GROUP="", FLEETPULSE_MQTT_CONNECTIONS="1")
    assert subscription_filter(loaded.mqtt_share_group) == "tenant/+/device/+/#"


async def test_empty_group_with_several_connections_names_the_setting() -> None:
    with pytest.raises(ConfigurationError) as caught:
        await settings(FLEETPULSE_MQTT_SHARE_GROUP="", FLEETPULSE_MQTT_CONNECTIONS="4")
    assert caught.value.setting == "FLEETPULSE_MQTT_SHARE_GROUP"
    assert "FLEETPULSE_MQTT_CONNECTIONS=1" in caught.value.reason


@pytest.mark.parametrize("group", ["a/b", "a+", "#", "x" * 41])
async def test_a_group_that_is_not_one_topic_level_is_refused(group: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        await settings(FLEETPULSE_MQTT_SHARE_GROUP=group)
    assert caught.value.setting == "FLEETPULSE_MQTT_SHARE_GROUP"


@pytest.mark.parametrize("value", ["0", "17", "two"])
async def test_a_bad_committed_batches_names_the_setting(value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        await settings(FLEETPULSE_COMMITTED_BATCHES=value)
    assert caught.value.setting == "FLEETPULSE_COMMITTED_BATCHES"
    assert "\n" not in str(caught.value)
