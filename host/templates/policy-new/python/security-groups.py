"""{{name}}: a security-groups policy for Weft ({{contract}}).

Gives the pods of listed namespaces their own security groups, and every
other pod the node's.
"""

import json
from typing import List

import wit_world
from componentize_py_types import Err
from wit_world.imports.security import Request

# The host calls `configure` on every fresh instance before a decision.
NAMESPACES = {}


class WitWorld(wit_world.WitWorld):
    def configure(self, settings: str) -> None:
        global NAMESPACES
        try:
            given = json.loads(settings or "{}")
        except ValueError as e:
            raise Err(f"invalid settings: {e}")
        unknown = set(given) - {"namespaces"}
        if unknown:
            raise Err(f"invalid settings: unknown field {sorted(unknown)[0]!r}")
        namespaces = given.get("namespaces", {})
        for namespace, groups in namespaces.items():
            if not isinstance(groups, list) or not 1 <= len(groups) <= 5:
                raise Err(
                    f"invalid settings: namespaces.{namespace} needs 1 to 5 security groups"
                )
        NAMESPACES = namespaces

    def select_security_groups(self, request: Request) -> List[str]:
        pod = request.pod
        if pod.namespace in NAMESPACES:
            return NAMESPACES[pod.namespace]
        if not request.node_security_groups:
            raise Err(
                f"pod {pod.namespace}/{pod.name}: the node has no security groups to default to"
            )
        return request.node_security_groups
