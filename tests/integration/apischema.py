"""Checks berthd's JSON answers against Docker's Engine API schema
(../shared/specs/docker-engine-api-v1.45.yaml, Swagger 2.0), as Podman checks
its compat API against Docker's swagger.

What fails: a value of the wrong type, a required field missing, a value
outside an enum, an item count outside minItems/maxItems, and a success status
the endpoint does not document. What passes, as Docker's own answers need it:
null for arrays and objects (Go's nil slices and maps) and for fields marked
x-nullable, and fields the schema does not name (Docker adds fields before it
documents them). Where dockerd's own answers leave its schema (a Go pointer
the schema does not mark x-nullable, an enum it has outgrown), the exception is
listed below with the type in moby that causes it."""

import json
import os
import re

import yaml

# A copy of ../shared/specs/docker-engine-api-v1.45.yaml, so a clean clone has it.
SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "spec",
                    "docker-engine-api-v1.45.yaml")

# Fields dockerd answers null although the schema does not say x-nullable:
# pointers in moby's api/types (container.Resources.MemorySwappiness *int64,
# OomKillDisable *bool, PidsLimit *int64; container.ExecInspect.ExitCode *int).
DOCKER_NULLS = re.compile(
    r"(\$\.HostConfig\.(MemorySwappiness|OomKillDisable|PidsLimit)"
    r"|^GET /exec/\{id\}/json 200: \$\.ExitCode)$")

# Enum values dockerd answers that the schema's enum does not list: the
# built-in `local` log driver (daemon/logger/local).
DOCKER_ENUM_EXTRAS = {".LogConfig.Type": ["local"]}


class Schema:
    def __init__(self, path=SPEC):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.routes = []
        for template, ops in self.doc["paths"].items():
            params = template.count("{")
            rx = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"
            if "{name}" in template and template.startswith(("/images/", "/distribution/")):
                # Image names hold slashes: /images/{name}/… matches any depth.
                rx = "^" + re.sub(r"\\{name\\}", ".+", re.escape(template)) + "$"
            self.routes.append((params, re.compile(rx), template, ops))
        # Literal segments win over templated ones (/containers/json before
        # /containers/{id}/json), as the daemon routes them.
        self.routes.sort(key=lambda r: r[0])

    def operation(self, method, path):
        for _, rx, template, ops in self.routes:
            if rx.match(path) and method.lower() in ops:
                return template, ops[method.lower()]
        return None, None

    def resolve(self, s):
        while isinstance(s, dict) and "$ref" in s:
            name = s["$ref"].rsplit("/", 1)[-1]
            s = self.doc["definitions"][name]
        return s

    def check_answer(self, method, path, status, body):
        """Problems with one answer, as strings; [] when it fits the schema."""
        template, op = self.operation(method, path)
        if op is None:
            return []
        responses = op.get("responses", {})
        spec = responses.get(status)
        if spec is None:
            if 200 <= status < 300:
                return [f"{method} {template}: status {status} is not one the API documents "
                        f"({sorted(responses)})"]
            spec = {"schema": {"$ref": "#/definitions/ErrorResponse"}}
        schema = spec.get("schema")
        if schema is None:
            return []
        try:
            value = json.loads(body) if body.strip() else None
        except ValueError as e:
            return [f"{method} {template} {status}: not JSON: {e}"]
        out = []
        self.check(schema, value, f"{method} {template} {status}: $", out)
        return out

    def check(self, schema, v, where, out, depth=0):
        if depth > 64:
            return
        schema = self.resolve(schema)
        if not isinstance(schema, dict):
            return
        for part in schema.get("allOf", []):
            self.check(part, v, where, out, depth + 1)
        t = schema.get("type")
        if t is None and "properties" in schema:
            t = "object"
        if v is None:
            if t in (None, "object", "array") or schema.get("x-nullable"):
                return
            if DOCKER_NULLS.search(where):
                return
            out.append(f"{where}: null where the schema wants {t}")
            return
        ok = {
            "string": lambda x: isinstance(x, str),
            "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
            "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
            "boolean": lambda x: isinstance(x, bool),
            "array": lambda x: isinstance(x, list),
            "object": lambda x: isinstance(x, dict),
        }.get(t)
        if ok is not None and not ok(v):
            out.append(f"{where}: {json.dumps(v)[:80]} is not {t}")
            return
        extras = [x for suffix, xs in DOCKER_ENUM_EXTRAS.items() if where.endswith(suffix)
                  for x in xs]
        if "enum" in schema and v not in schema["enum"] + extras:
            out.append(f"{where}: {json.dumps(v)[:80]} is not one of {schema['enum']}")
        if isinstance(v, list):
            if len(v) < schema.get("minItems", 0) or len(v) > schema.get("maxItems", len(v)):
                out.append(f"{where}: {len(v)} items, outside "
                           f"{schema.get('minItems')}..{schema.get('maxItems')}")
            if "items" in schema:
                for i, x in enumerate(v):
                    self.check(schema["items"], x, f"{where}[{i}]", out, depth + 1)
        if isinstance(v, dict):
            req = schema.get("required")
            if isinstance(req, list):
                for k in req:
                    if k not in v:
                        out.append(f"{where}: required field {k} missing")
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for k, x in v.items():
                if k in props:
                    self.check(props[k], x, f"{where}.{k}", out, depth + 1)
                elif isinstance(extra, dict):
                    self.check(extra, x, f"{where}.{k}", out, depth + 1)


_schema = None


def schema():
    global _schema
    if _schema is None:
        _schema = Schema()
    return _schema


class Recorder:
    """Reads the answers berthds append to BERTH_API_RECORD_DIR/<pid>.jsonl,
    each file from where the last look stopped."""

    def __init__(self, directory):
        self.dir = directory
        self.offsets = {}

    def new_problems(self):
        out = []
        for f in sorted(os.listdir(self.dir)):
            p = os.path.join(self.dir, f)
            with open(p, "rb") as fh:
                fh.seek(self.offsets.get(p, 0))
                data = fh.read()
            # A line still being written waits for the next look.
            end = data.rfind(b"\n") + 1
            self.offsets[p] = self.offsets.get(p, 0) + end
            for line in data[:end].splitlines():
                a = json.loads(line)
                out += schema().check_answer(a["method"], a["path"], a["status"], a["body"])
        return out
