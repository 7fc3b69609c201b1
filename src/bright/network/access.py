"""Who is asking: the principal of a request, and the roles of a BRIGHT node.

Every request a node serves has a :class:`Principal`. The authentication middleware
(:mod:`bright.api.auth`) sets it on ``request.state.principal`` from an API token, a dashboard
session or a signed request from a peer node; a request without credentials is the anonymous
``public`` principal. Policy enforcement, the role table and the audit log read it through
:func:`principal_of`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ANONYMOUS", "OPEN_ACCESS", "ROLES", "USER_GROUPS", "Principal", "principal_of"]

#: The ten user groups of the use case, then the node-level roles. ``public`` is the anonymous
#: visitor; ``peer`` a node of the same network calling with a signed request.
USER_GROUPS = (
    "member",
    "manager",
    "school_staff",
    "local_government",
    "energy_company",
    "ngo",
    "researcher",
    "technology_provider",
    "network_organiser",
    "investor",
)
ROLES = (*USER_GROUPS, "public", "peer")


@dataclass(frozen=True)
class Principal:
    """The caller of one request.

    Attributes
    ----------
    role
        One of :data:`ROLES`.
    subject
        User name, token name or peer node id (``urn:ngsi-ld:Node:...``); None when anonymous.
    kind
        ``anonymous``, ``user`` (dashboard session or API token), ``node`` (a signed peer request)
        or ``open`` (no credentials on a node running with ``BRIGHT_AUTH=open``).
    community_id
        The community the principal belongs to (members, managers), if any.
    member_id
        The member entity id of a ``member`` principal, if any.
    tenant
        The NGSI-LD tenant the credentials were issued for (None: the default tenant).
    attributes
        Anything else the authenticator learnt (e.g. the peer's key id).
    """

    role: str = "public"
    subject: str | None = None
    kind: str = "anonymous"
    community_id: str | None = None
    member_id: str | None = None
    tenant: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        """True for a caller that presented no credentials."""
        return self.kind == "anonymous"


ANONYMOUS = Principal()
#: The caller without credentials on a node running with ``BRIGHT_AUTH=open`` (no access control,
#: for the ETSI conformance run and tests): it acts as the node's manager. See docs/access.md.
OPEN_ACCESS = Principal(role="manager", kind="open")


def principal_of(request: Any) -> Principal:
    """The principal the authentication middleware attached to ``request`` (anonymous if none)."""
    state = getattr(request, "state", None)
    found = getattr(state, "principal", None) if state is not None else None
    return found if isinstance(found, Principal) else ANONYMOUS
