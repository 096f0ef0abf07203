"""YAML read the way upstream's Go parser (yaml.v3) reads it: YAML 1.2 booleans only (``yes``
and ``on`` stay strings) and duplicate mapping keys rejected. Workload specs, trace headers and
policy bundles all load through here."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml


class YamlError(ValueError):
    """The text is not YAML blis accepts; the message is one line."""


class _StrictLoader(yaml.SafeLoader):
    pass


_StrictLoader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    result: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise YamlError(f"line {key_node.start_mark.line + 1}: mapping key "
                            f"{json.dumps(str(key), ensure_ascii=False)} already defined")
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              _mapping_without_duplicates)


def strict_yaml(text: str) -> Any:
    """Parse YAML as yaml.v3 would: YAML 1.2 booleans, duplicate keys rejected."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise YamlError(" ".join(str(exc).split())) from None
