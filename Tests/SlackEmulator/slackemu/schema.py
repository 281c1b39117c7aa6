"""Slack's published Web API schema (slack-api-specs, OpenAPI 2.0 v1.7.0, Oct 2020) and a small
draft-4 JSON-schema validator (stdlib only) for the subset of keywords that schema uses.

Used two ways:
* arguments: every required parameter (other than `token`) must be present; parameter names the
  schema does not know (e.g. `team_id`, which Bolt adds) are accepted and reported as unknown;
* responses: the emulator's own success responses are checked against the method's `200` schema as a
  *floor*: `required`, `type`, `enum`, `pattern`, `items`, `$ref`, but `additionalProperties: false`
  is ignored (the schema predates fields real Slack sends today, such as `message.app_id`).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PATH = os.path.join(os.path.dirname(HERE), "schema", "slack_web_openapi_v2.json.gz")

# Methods newer than the schema: name -> (required args, optional args).
EXTRA_METHODS: dict[str, tuple[list[str], list[str]]] = {
    "apps.connections.open": ([], []),
}

# Places where the 2020 schema contradicts what Slack sends (and what the SDKs expect): skipped.
KNOWN_SCHEMA_BUGS = {
    ("chat.update", "$.message.blocks"),   # the schema says object; Slack returns the blocks array
}

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "null": lambda v: v is None,
}


class Schema:
    def __init__(self, path: str = DEFAULT_PATH) -> None:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            self.doc = json.load(f)
        self.definitions = self.doc.get("definitions", {})
        self.methods: dict[str, dict] = {}
        for p, ops in self.doc["paths"].items():
            name = p.lstrip("/")
            op = ops.get("post") or ops.get("get")
            params = [x for x in op.get("parameters", []) if x.get("name") != "token"]
            self.methods[name] = {
                "required": [x["name"] for x in params if x.get("required")],
                "optional": [x["name"] for x in params if not x.get("required")],
                "params": {x["name"]: x for x in params},
                "success": op.get("responses", {}).get("200", {}).get("schema"),
                "error": op.get("responses", {}).get("default", {}).get("schema"),
                "verbs": sorted(ops.keys()),
            }
        for name, (req, opt) in EXTRA_METHODS.items():
            self.methods.setdefault(name, {"required": req, "optional": opt, "params": {}, "success": None,
                                           "error": None, "verbs": ["post"]})

    def knows(self, method: str) -> bool:
        return method in self.methods

    def check_args(self, method: str, args: dict) -> tuple[list[str], list[str]]:
        """(missing required argument names, unknown argument names)."""
        m = self.methods.get(method)
        if m is None:
            return [], []
        missing = [n for n in m["required"] if args.get(n) in (None, "")]
        known = set(m["required"]) | set(m["optional"]) | {"token"}
        unknown = sorted(k for k in args if k not in known)
        return missing, unknown

    def validate_response(self, method: str, obj: Any) -> list[str]:
        """Violations of the method's success (ok:true) schema, as the floor described above."""
        m = self.methods.get(method)
        if m is None or not m["success"] or not isinstance(obj, dict) or obj.get("ok") is not True:
            return []
        errors: list[str] = []
        self._validate(m["success"], obj, "$", errors)
        return [e for e in errors if (method, e.split(":", 1)[0]) not in KNOWN_SCHEMA_BUGS]

    # -- draft-4 subset ---------------------------------------------------------------------------

    def _resolve(self, schema: dict) -> dict:
        seen = 0
        while "$ref" in schema and seen < 50:
            ref = schema["$ref"]
            if not ref.startswith("#/definitions/"):
                return {}
            schema = self.definitions.get(ref[len("#/definitions/"):], {})
            seen += 1
        return schema

    def _validate(self, schema: dict, value: Any, path: str, errors: list[str]) -> None:
        schema = self._resolve(schema)
        t = schema.get("type")
        if t is not None:
            types = t if isinstance(t, list) else [t]
            if not any(_TYPES.get(x, lambda v: True)(value) for x in types):
                errors.append(f"{path}: expected {t}, got {type(value).__name__}")
                return
        if "enum" in schema and value not in schema["enum"]:
            errors.append(f"{path}: {value!r} not in {schema['enum']}")
        if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
        for key in ("allOf",):
            for sub in schema.get(key, []):
                self._validate(sub, value, path, errors)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                if not any(not self._errors_of(sub, value, path) for sub in schema[key]):
                    errors.append(f"{path}: matches none of {key}")
        if isinstance(value, dict):
            for name in schema.get("required", []):
                if name not in value:
                    errors.append(f"{path}.{name}: required but missing")
            for name, sub in schema.get("properties", {}).items():
                if name in value:
                    self._validate(sub, value[name], f"{path}.{name}", errors)
        if isinstance(value, list):
            items = schema.get("items")
            if isinstance(items, dict):
                for i, v in enumerate(value):
                    self._validate(items, v, f"{path}[{i}]", errors)
            elif isinstance(items, list):
                for i, (sub, v) in enumerate(zip(items, value)):
                    self._validate(sub, v, f"{path}[{i}]", errors)
            if "minItems" in schema and len(value) < schema["minItems"]:
                errors.append(f"{path}: fewer than {schema['minItems']} items")

    def _errors_of(self, schema: dict, value: Any, path: str) -> list[str]:
        errs: list[str] = []
        self._validate(schema, value, path, errs)
        return errs
