"""sg-selector in Python: the same rules, settings and decisions as the Rust
default policy `policies/sg-selector` (its fixtures are checked against this
component too).

The first rule whose selectors all match the pod decides; a pod no rule
matches gets the node's security groups. Settings:

    {"rules": [{"namespaces": ["payments"], "match-labels": {"app": "api"},
                "service-accounts": ["payments/api", "deployer"],
                "security-groups": ["sg-0123456789abcdef0"]}]}
"""

import json
import re
from typing import List

import wit_world
from componentize_py_types import Err
from wit_world.imports.security import Pod, Request

# Most security groups EC2 allows on one ENI by default.
MAX_GROUPS = 5
# `sg-` followed by 8 or 17 lowercase hex digits, as EC2 issues them.
SG_ID = re.compile(r"sg-(?:[0-9a-f]{8}|[0-9a-f]{17})")
RULE_FIELDS = ("namespaces", "match-labels", "service-accounts", "security-groups")

# The validated rules; the host calls `configure` on every fresh instance.
RULES: list = []


def parse_rule(i: int, rule) -> dict:
    def fail(message: str):
        raise Err(f"invalid settings: rules[{i}].{message}")

    if not isinstance(rule, dict):
        fail("must be a table")
    for key in rule:
        if key not in RULE_FIELDS:
            fail(f"{key}: unknown field, expected one of {', '.join(RULE_FIELDS)}")
    if "security-groups" not in rule:
        fail("security-groups: missing field")
    groups = rule["security-groups"]
    if not isinstance(groups, list) or not 1 <= len(groups) <= MAX_GROUPS:
        count = len(groups) if isinstance(groups, list) else 0
        fail(f"security-groups: {count} given, 1 to {MAX_GROUPS} allowed")
    for group in groups:
        if not isinstance(group, str) or not SG_ID.fullmatch(group):
            fail(
                f"security-groups: {json.dumps(group)} is not a security group id "
                "(`sg-` and 8 or 17 lowercase hex digits)"
            )
    for j, group in enumerate(groups):
        if group in groups[:j]:
            fail(f"security-groups: {json.dumps(group)} is listed twice (entry {j})")
    return {
        "namespaces": list(rule.get("namespaces", [])),
        "match-labels": dict(rule.get("match-labels", {})),
        "service-accounts": list(rule.get("service-accounts", [])),
        "security-groups": list(groups),
    }


def matches(rule: dict, pod: Pod) -> bool:
    if rule["namespaces"] and pod.namespace not in rule["namespaces"]:
        return False
    labels = {(label.key, label.value) for label in pod.labels}
    if any((k, v) not in labels for k, v in rule["match-labels"].items()):
        return False
    accounts = rule["service-accounts"]
    if not accounts:
        return True
    for wanted in accounts:
        namespace, slash, name = wanted.partition("/")
        if slash:
            if namespace == pod.namespace and name == pod.service_account:
                return True
        elif wanted == pod.service_account:
            return True
    return False


class WitWorld(wit_world.WitWorld):
    def configure(self, settings: str) -> None:
        global RULES
        try:
            given = json.loads(settings) if settings.strip() else {}
        except ValueError as e:
            raise Err(f"invalid settings: {e}")
        if not isinstance(given, dict):
            raise Err("invalid settings: expected a JSON object")
        for key in given:
            if key != "rules":
                raise Err(f"invalid settings: unknown field `{key}`, expected `rules`")
        RULES = [parse_rule(i, rule) for i, rule in enumerate(given.get("rules", []))]

    def select_security_groups(self, request: Request) -> List[str]:
        pod = request.pod
        for rule in RULES:
            if matches(rule, pod):
                return rule["security-groups"]
        if not request.node_security_groups:
            raise Err(
                f"no rule matches pod {pod.namespace}/{pod.name} and the node has "
                "no security groups to default to"
            )
        return request.node_security_groups
