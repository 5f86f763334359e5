"""Reading a synthesized CloudFormation template: resources, dependency order, intrinsic functions.

Pure: nothing here talks to AWS. The local stack creates resources from the template's own
properties (moto's CloudFormation cannot deploy a CDK template), so it needs to resolve the
intrinsics CDK emits: Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select, Fn::Split, Fn::If, ...
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"
NO_VALUE = object()  # AWS::NoValue: the property is removed

_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class TemplateError(Exception):
    """The template uses something the local stack cannot resolve."""


@dataclass
class Physical:
    """What a created resource answers to `Ref` and `Fn::GetAtt`."""

    ref: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Template:
    body: dict[str, Any]
    path: Path | None = None
    stack_name: str = "ByomGateway"

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.body.get("Resources", {})

    @property
    def asset_dir(self) -> Path:
        """Where the template's asset paths are relative to (the cloud assembly, cdk.out)."""
        return self.path.parent if self.path else Path.cwd()

    def of_type(self, resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical_id, resource in self.resources.items():
            if resource.get("Type") == resource_type:
                yield logical_id, resource

    def properties(self, logical_id: str) -> dict[str, Any]:
        return self.resources[logical_id].get("Properties", {})


def load_template(path: Path, stack_name: str | None = None) -> Template:
    body = json.loads(Path(path).read_text(encoding="utf-8"))
    name = stack_name or Path(path).name.removesuffix(".template.json")
    return Template(body=body, path=Path(path).resolve(), stack_name=name)


def references(value: Any) -> set[str]:
    """Logical ids (and pseudo parameters) a value refers to through Ref, GetAtt or Sub."""
    found: set[str] = set()
    if isinstance(value, dict):
        if len(value) == 1:
            (key, arg), *_ = value.items()
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                target = arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]
                found.add(target)
            elif key == "Fn::Sub":
                text = arg[0] if isinstance(arg, list) else arg
                local = set(arg[1]) if isinstance(arg, list) and len(arg) > 1 else set()
                for name in _SUB_VARIABLE.findall(text):
                    root = name.split(".", 1)[0]
                    if root not in local:
                        found.add(root)
        for item in value.values():
            found |= references(item)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


def get_att_targets(value: Any) -> list[str]:
    """Logical ids named by every Fn::GetAtt inside a value (e.g. a function inside an integration Uri)."""
    targets: list[str] = []
    if isinstance(value, dict):
        for key, arg in value.items():
            if key == "Fn::GetAtt":
                targets.append(arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0])
            else:
                targets.extend(get_att_targets(arg))
    elif isinstance(value, list):
        for item in value:
            targets.extend(get_att_targets(item))
    return targets


def dependency_order(template: Template) -> list[str]:
    """Logical ids ordered so that every resource comes after those it refers to or depends on."""
    resources = template.resources
    graph: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        depends = resource.get("DependsOn", [])
        deps = {depends} if isinstance(depends, str) else set(depends)
        deps |= references(resource.get("Properties", {}))
        graph[logical_id] = {d for d in deps if d in resources and d != logical_id}

    ordered: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(node: str) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            raise TemplateError(f"circular dependency through {node}")
        state[node] = 1
        for dep in sorted(graph[node]):
            visit(dep)
        state[node] = 2
        ordered.append(node)

    for logical_id in resources:
        visit(logical_id)
    return ordered


def _synthetic_physical(logical_id: str, resource_type: str) -> Physical:
    """A stand-in for a resource the local stack does not create (an IAM role, a log group, ...)."""
    service = resource_type.split("::")[1].lower() if resource_type.count("::") == 2 else "unknown"
    kind = resource_type.rsplit("::", 1)[-1].lower()
    arn = f"arn:{PARTITION}:{service}:{REGION}:{ACCOUNT_ID}:{kind}/{logical_id}"
    if service == "iam":  # a global service: its ARNs name no region (a service checks the form)
        arn = f"arn:{PARTITION}:iam::{ACCOUNT_ID}:{kind}/{logical_id}"
    if resource_type == "AWS::Lambda::Function":
        arn = f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT_ID}:function:{logical_id}"
    return Physical(ref=logical_id, attributes={"Arn": arn})


class Resolver:
    """Resolves intrinsic functions against the resources created so far.

    Resources the local stack did not create resolve to synthetic names and ARNs, so an
    environment variable naming e.g. a role still gets a plausible value.
    """

    def __init__(self, template: Template, physical: Mapping[str, Physical] | None = None) -> None:
        self.template = template
        self.physical: dict[str, Physical] = dict(physical or {})
        self.pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::StackName": template.stack_name,
            "AWS::StackId": (
                f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{template.stack_name}/local"
            ),
            "AWS::NotificationARNs": [],
        }

    def register(self, logical_id: str, physical: Physical) -> None:
        self.physical[logical_id] = physical

    # -- public entry points -------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        resolved = self._resolve(value)
        return None if resolved is NO_VALUE else resolved

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        parameters = self.template.body.get("Parameters", {})
        if name in parameters:
            if "Default" not in parameters[name]:
                raise TemplateError(f"parameter {name} has no default")
            return parameters[name]["Default"]
        return self._physical(name).ref

    def get_att(self, logical_id: str, attribute: str) -> Any:
        physical = self._physical(logical_id)
        if attribute in physical.attributes:
            return physical.attributes[attribute]
        raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute} is not known locally")

    # -- internals -----------------------------------------------------------------------------

    def _physical(self, logical_id: str) -> Physical:
        if logical_id in self.physical:
            return self.physical[logical_id]
        resource = self.template.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"reference to unknown resource or parameter {logical_id}")
        return _synthetic_physical(logical_id, resource.get("Type", ""))

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self._resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), *_ = value.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                return handler(self, arg)
            if key == "Condition":
                return self._condition(arg)
        resolved = {k: self._resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _condition(self, name: str) -> bool:
        conditions = self.template.body.get("Conditions", {})
        if name not in conditions:
            raise TemplateError(f"unknown condition {name}")
        return bool(self._resolve(conditions[name]))

    def _ref(self, arg: str) -> Any:
        return self.ref(arg)

    def _get_att(self, arg: Any) -> Any:
        if isinstance(arg, str):
            logical_id, attribute = arg.split(".", 1)
        else:
            logical_id, attribute = arg[0], self._resolve(arg[1])
        return self.get_att(logical_id, attribute)

    def _join(self, arg: list[Any]) -> str:
        delimiter, items = arg
        return str(delimiter).join(str(v) for v in self._resolve(items))

    def _sub(self, arg: Any) -> str:
        text, variables = (
            (arg[0], self._resolve(arg[1]) if len(arg) > 1 else {}) if isinstance(arg, list) else (arg, {})
        )

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.template.resources:
                logical_id, attribute = name.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(name))

        substituted = _SUB_VARIABLE.sub(replace, text)
        return substituted.replace("${!", "${")

    def _select(self, arg: list[Any]) -> Any:
        index, items = self._resolve(arg[0]), self._resolve(arg[1])
        return items[int(index)]

    def _split(self, arg: list[Any]) -> list[str]:
        delimiter, text = arg[0], self._resolve(arg[1])
        return str(text).split(delimiter)

    def _if(self, arg: list[Any]) -> Any:
        name, when_true, when_false = arg
        return self._resolve(when_true if self._condition(name) else when_false)

    def _equals(self, arg: list[Any]) -> bool:
        left, right = (self._resolve(v) for v in arg)
        return bool(left == right)

    def _not(self, arg: list[Any]) -> bool:
        return not self._resolve(arg[0])

    def _and(self, arg: list[Any]) -> bool:
        return all(self._resolve(v) for v in arg)

    def _or(self, arg: list[Any]) -> bool:
        return any(self._resolve(v) for v in arg)

    def _base64(self, arg: Any) -> str:
        return base64.b64encode(str(self._resolve(arg)).encode()).decode()

    def _get_azs(self, _arg: Any) -> list[str]:
        return [f"{REGION}{zone}" for zone in "abcdef"]

    def _import_value(self, arg: Any) -> Any:
        raise TemplateError(f"Fn::ImportValue {arg!r} cannot be resolved by a single local stack")

    def _to_json_string(self, arg: Any) -> str:
        return json.dumps(self._resolve(arg), separators=(",", ":"))


_INTRINSICS = {
    "Ref": Resolver._ref,
    "Fn::GetAtt": Resolver._get_att,
    "Fn::Join": Resolver._join,
    "Fn::Sub": Resolver._sub,
    "Fn::Select": Resolver._select,
    "Fn::Split": Resolver._split,
    "Fn::If": Resolver._if,
    "Fn::Equals": Resolver._equals,
    "Fn::Not": Resolver._not,
    "Fn::And": Resolver._and,
    "Fn::Or": Resolver._or,
    "Fn::Base64": Resolver._base64,
    "Fn::GetAZs": Resolver._get_azs,
    "Fn::ImportValue": Resolver._import_value,
    "Fn::ToJsonString": Resolver._to_json_string,
}
