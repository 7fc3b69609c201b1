"""The MQTT topic tree."""

from __future__ import annotations

import pytest

from bright.edge.topics import (
    TopicError,
    control_topic,
    entity_topic,
    parse_topic,
    senml_topic,
    status_topic,
    subscriptions,
)


def test_meter_and_device_topics_name_their_entities():
    assert senml_topic("school-371", "home03") == "bright/school-371/home03/senml"
    assert parse_topic("bright/school-371/home03/senml").entity_id == "urn:ngsi-ld:Meter:school-371:home03"
    t = senml_topic("school-371", "home03", "battery", root="test/abc")
    assert t == "test/abc/school-371/home03/battery/senml"
    a = parse_topic(t, root="test/abc")
    assert (a.community, a.member, a.asset, a.kind) == ("school-371", "home03", "battery", "senml")
    assert a.entity_id == "urn:ngsi-ld:Battery:school-371:home03"
    assert parse_topic("bright/c/m/pv/status").entity_type == "PhotovoltaicDevice"
    assert status_topic("c", "m") == "bright/c/m/status"
    assert control_topic("c", "m", "ev") == "bright/c/m/ev/control"


def test_entity_topic_is_the_inverse_of_parse_topic():
    for eid in ("urn:ngsi-ld:Meter:c1:m1", "urn:ngsi-ld:HeatPump:c1:m2", "urn:ngsi-ld:EVChargingStation:c:x"):
        assert parse_topic(entity_topic(eid)).entity_id == eid


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("other/c/m/senml", "not under 'bright'"),
        ("bright/c/senml", "not <root>/<community>/<member>"),
        ("bright/c/m/boat/senml", "asset 'boat'"),
        ("bright/c/m/readings", "'readings' is not one of"),
        ("bright/c//senml", "member segment '' is empty"),
        ("bright/c/m:x/senml", "member segment 'm:x'"),
    ],
)
def test_topics_outside_the_tree_are_refused(topic, message):
    with pytest.raises(TopicError, match=message):
        parse_topic(topic)


def test_keys_that_cannot_be_segments_are_refused():
    with pytest.raises(TopicError, match="cannot be a topic segment"):
        senml_topic("c/1", "m")
    with pytest.raises(TopicError, match="not controllable"):
        control_topic("c", "m", "meter")
    with pytest.raises(TopicError, match="no topic"):
        entity_topic("urn:ngsi-ld:Building:c:m")


def test_subscriptions_cover_meters_and_devices():
    assert subscriptions("r") == ["r/+/+/senml", "r/+/+/+/senml"]
