"""The MQTT topic tree of a BRIGHT node.

Every topic starts with a root (``bright`` by default; tests and multi-node brokers use another)
and names the community and the member whose access point or device publishes::

    bright/<community>/<member>/senml                  meter readings (SenML pack), QoS 1
    bright/<community>/<member>/<asset>/senml          device readings (SenML pack), QoS 1
    bright/<community>/<member>[/<asset>]/status       device status (JSON, retained, MQTT will)
    bright/<community>/<member>/<asset>/control        setpoints from the node (JSON), QoS 1

``<asset>`` is one of :data:`ASSETS` (``pv``, ``battery``, ``ev``, ``heatpump``; ``meter`` is the
default when the segment is absent). A topic names one NGSI-LD entity of the twin::

    bright/school-371/home03/senml          ->  urn:ngsi-ld:Meter:school-371:home03
    bright/school-371/home03/battery/senml  ->  urn:ngsi-ld:Battery:school-371:home03

Segments are the community and member keys of the entity ids: non-empty, without ``/``, ``+``,
``#`` or ``:``. The ingest subscribes to ``<root>/+/+/senml`` and ``<root>/+/+/+/senml``.

The ``control`` topic is for devices that do not speak S2 (a Home Assistant automation, a simple
relay): ``{"setpoint_kw": 3.5, "start": "2024-06-01T10:00:00Z", "duration_s": 900}``; devices that
speak S2 are controlled over its WebSocket instead (:mod:`bright.edge.s2`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ASSETS",
    "DEFAULT_ROOT",
    "Address",
    "TopicError",
    "control_topic",
    "entity_topic",
    "parse_topic",
    "senml_topic",
    "status_topic",
    "subscriptions",
]

DEFAULT_ROOT = "bright"
#: Asset segment -> NGSI-LD entity type (short name of the BRIGHT @context).
ASSETS: dict[str, str] = {
    "meter": "Meter",
    "pv": "PhotovoltaicDevice",
    "battery": "Battery",
    "ev": "EVChargingStation",
    "heatpump": "HeatPump",
}
_TYPE_TO_ASSET = {v: k for k, v in ASSETS.items()}
_SEGMENT = re.compile(r"^[^/+#:\s]+$")
_KINDS = ("senml", "status", "control")


class TopicError(ValueError):
    """A topic outside the tree, or a key that cannot be a topic segment."""


@dataclass(frozen=True)
class Address:
    """What a topic names.

    Attributes
    ----------
    community, member
        The community and member keys.
    asset
        ``meter``, ``pv``, ``battery``, ``ev`` or ``heatpump``.
    kind
        ``senml``, ``status`` or ``control``.
    """

    community: str
    member: str
    asset: str
    kind: str

    @property
    def entity_type(self) -> str:
        """The NGSI-LD type of the entity (short name): ``Meter``, ``Battery`` ..."""
        return ASSETS[self.asset]

    @property
    def entity_id(self) -> str:
        """``urn:ngsi-ld:<Type>:<community>:<member>``."""
        return f"urn:ngsi-ld:{self.entity_type}:{self.community}:{self.member}"


def _check_segment(value: str, what: str) -> str:
    if not isinstance(value, str) or not _SEGMENT.match(value):
        raise TopicError(f"{what} {value!r} cannot be a topic segment (no '/', '+', '#', ':' or spaces)")
    return value


def _check_root(root: str) -> str:
    parts = root.split("/")
    for p in parts:
        _check_segment(p, "root segment")
    return root


def _topic(root: str, community: str, member: str, asset: str, kind: str) -> str:
    _check_root(root)
    _check_segment(community, "community")
    _check_segment(member, "member")
    if asset not in ASSETS:
        raise TopicError(f"asset {asset!r} is not one of {', '.join(ASSETS)}")
    middle = f"{community}/{member}" if asset == "meter" else f"{community}/{member}/{asset}"
    return f"{root}/{middle}/{kind}"


def senml_topic(community: str, member: str, asset: str = "meter", *, root: str = DEFAULT_ROOT) -> str:
    """The topic a meter (``asset="meter"``) or device publishes its SenML readings on.

    Parameters
    ----------
    community, member
        Community and member keys (as in the entity ids).
    asset
        ``meter`` (default), ``pv``, ``battery``, ``ev`` or ``heatpump``.
    root
        Root of the tree.

    Examples
    --------
    >>> senml_topic("school-371", "home03")
    'bright/school-371/home03/senml'
    >>> senml_topic("school-371", "home03", "battery")
    'bright/school-371/home03/battery/senml'
    """
    return _topic(root, community, member, asset, "senml")


def status_topic(community: str, member: str, asset: str = "meter", *, root: str = DEFAULT_ROOT) -> str:
    """The retained status topic of a device (its MQTT will says ``{"online": false}``)."""
    return _topic(root, community, member, asset, "status")


def control_topic(community: str, member: str, asset: str, *, root: str = DEFAULT_ROOT) -> str:
    """The topic the node publishes setpoints on for a device without S2."""
    if asset == "meter":
        raise TopicError("a meter is not controllable; name the device (pv, battery, ev, heatpump)")
    return _topic(root, community, member, asset, "control")


def entity_topic(entity_id: str, kind: str = "senml", *, root: str = DEFAULT_ROOT) -> str:
    """The topic of an entity id ``urn:ngsi-ld:<Type>:<community>:<member>``.

    Raises
    ------
    TopicError
        The id does not follow that pattern or its type has no asset segment.
    """
    parts = entity_id.split(":")
    if len(parts) != 5 or parts[:2] != ["urn", "ngsi-ld"]:
        raise TopicError(f"entity id {entity_id!r} is not urn:ngsi-ld:<Type>:<community>:<member>")
    asset = _TYPE_TO_ASSET.get(parts[2])
    if asset is None:
        raise TopicError(f"entity type {parts[2]!r} has no topic (types: {', '.join(ASSETS.values())})")
    if kind not in _KINDS:
        raise TopicError(f"kind {kind!r} is not one of {', '.join(_KINDS)}")
    return _topic(root, parts[3], parts[4], asset, kind)


def parse_topic(topic: str, *, root: str = DEFAULT_ROOT) -> Address:
    """What a topic of the tree names.

    Parameters
    ----------
    topic
        A topic of a received message.
    root
        Root of the tree.

    Returns
    -------
    Address

    Raises
    ------
    TopicError
        The topic is outside ``root`` or does not follow the tree; the message says why.

    Examples
    --------
    >>> parse_topic("bright/school-371/home03/battery/senml").entity_id
    'urn:ngsi-ld:Battery:school-371:home03'
    """
    prefix = root + "/"
    if not topic.startswith(prefix):
        raise TopicError(f"topic {topic!r} is not under {root!r}")
    parts = topic[len(prefix) :].split("/")
    if len(parts) == 3:
        community, member, kind = parts
        asset = "meter"
    elif len(parts) == 4:
        community, member, asset, kind = parts
        if asset not in ASSETS:
            raise TopicError(f"topic {topic!r}: asset {asset!r} is not one of {', '.join(ASSETS)}")
    else:
        raise TopicError(f"topic {topic!r} is not <root>/<community>/<member>[/<asset>]/<kind>")
    if kind not in _KINDS:
        raise TopicError(f"topic {topic!r}: {kind!r} is not one of {', '.join(_KINDS)}")
    for value, what in ((community, "community"), (member, "member")):
        if not value or not _SEGMENT.match(value):
            raise TopicError(f"topic {topic!r}: {what} segment {value!r} is empty or invalid")
    return Address(community, member, asset, kind)


def subscriptions(root: str = DEFAULT_ROOT, kind: str = "senml") -> list[str]:
    """The topic filters the ingest subscribes to: meters and devices of every community."""
    _check_root(root)
    return [f"{root}/+/+/{kind}", f"{root}/+/+/+/{kind}"]
