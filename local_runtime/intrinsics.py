"""CloudFormation intrinsic functions and conditions, resolved against the stack's physical resources.

`Resolver` answers Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::If, Fn::Select, Fn::Split, Fn::FindInMap, the
pseudo parameters and Conditions from what resources.py has created so far (`physical`); `references` tells
the provisioner which resources a property depends on, so it can create them in dependency order."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from local_runtime.template import Template

ACCOUNT_ID = "123456789012"
_SUB_PATTERN = re.compile(r"\$\{([^}]+)\}")


@dataclass
class PhysicalResource:
    logical_id: str
    type: str
    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


class UnresolvableError(Exception):
    pass


@dataclass
class Resolver:
    template: Template
    region: str
    stack_name: str
    parameters: dict[str, str]
    physical: dict[str, PhysicalResource] = field(default_factory=dict)

    def pseudo(self, name: str) -> str:
        values = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT_ID}:stack/{self.stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name not in values:
            raise UnresolvableError(f"unknown pseudo parameter {name}")
        return values[name]

    def condition(self, name: str) -> bool:
        conditions = self.template.document.get("Conditions") or {}
        if name not in conditions:
            raise UnresolvableError(f"unknown condition {name}")
        return bool(self._condition_value(conditions[name]))

    def _condition_value(self, expression: Any) -> bool:
        if isinstance(expression, dict) and len(expression) == 1:
            ((key, value),) = expression.items()
            if key == "Fn::Equals":
                left, right = (self.resolve(item) for item in value)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self._condition_value(value[0])
            if key == "Fn::And":
                return all(self._condition_value(item) for item in value)
            if key == "Fn::Or":
                return any(self._condition_value(item) for item in value)
            if key == "Condition":
                return self.condition(value)
        raise UnresolvableError(f"unsupported condition expression {expression!r}")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value if not _is_no_value(item)]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                resource, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.get_att(resource, attribute)
            if key == "Fn::Sub":
                return self.sub(argument)
            if key == "Fn::Join":
                delimiter, items = argument
                return delimiter.join(str(item) for item in self.resolve(items))
            if key == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                delimiter, source = argument
                return str(self.resolve(source)).split(delimiter)
            if key == "Fn::FindInMap":
                mapping, first, second = (self.resolve(item) for item in argument)
                return self.template.document["Mappings"][mapping][first][second]
            if key.startswith("Fn::"):
                raise UnresolvableError(f"{key} is not supported by the local runtime")
        return {key: self.resolve(item) for key, item in value.items() if not _is_no_value(item)}

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        parameters = self.template.document.get("Parameters") or {}
        if name in parameters:
            if name in self.parameters:
                return self.parameters[name]
            if "Default" not in parameters[name]:
                raise UnresolvableError(f"parameter {name} has no Default; pass --parameter {name}=VALUE")
            return parameters[name]["Default"]
        if name in self.physical:
            return self.physical[name].ref
        raise UnresolvableError(f"Ref to {name}, which is not (yet) created")

    def get_att(self, resource: str, attribute: str) -> str:
        if resource not in self.physical:
            raise UnresolvableError(f"GetAtt {resource}.{attribute}: {resource} is not (yet) created")
        attributes = self.physical[resource].attributes
        if attribute not in attributes:
            raise UnresolvableError(f"GetAtt {resource}.{attribute}: attribute not known locally")
        return attributes[attribute]

    def sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], {key: self.resolve(val) for key, val in argument[1].items()}
        else:
            text, variables = argument, {}

        def replace(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if expression in variables:
                return str(variables[expression])
            if "." in expression and not expression.startswith("AWS::"):
                resource, attribute = expression.split(".", 1)
                return str(self.get_att(resource, attribute))
            return str(self.ref(expression))

        return _SUB_PATTERN.sub(replace, text)


def _is_no_value(value: Any) -> bool:
    return isinstance(value, dict) and value == {"Ref": "AWS::NoValue"}


def references(value: Any) -> set[str]:
    """Logical ids a property value depends on."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(item[0] if isinstance(item, list) else str(item).split(".", 1)[0])
            elif key == "Fn::Sub":
                text = item[0] if isinstance(item, list) else item
                for expression in _SUB_PATTERN.findall(text):
                    if not expression.startswith("!"):
                        found.add(expression.split(".", 1)[0])
                if isinstance(item, list):
                    found |= references(item[1])
            else:
                found |= references(item)
    return found
