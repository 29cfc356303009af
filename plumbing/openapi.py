"""OpenAPI links: how one operation's answer feeds the next (a created draft's id to read, edit,
delete or send it), so clients and stateful API testing (schemathesis) can chain the calls."""

from typing import Any


def operation_ref(method: str, path: str) -> str:
    """The ``operationRef`` of ``method path`` in the service's own document (a JSON Pointer in a
    URI fragment: ``/`` as ``~1``, braces percent-encoded)."""
    pointer = path.replace("~", "~0").replace("/", "~1").replace("{", "%7B").replace("}", "%7D")
    return f"#/paths/{pointer}/{method.lower()}"


def link(method: str, path: str, description: str, **parameters: str) -> dict[str, Any]:
    """A link to ``method path``, each of its ``parameters`` given by a runtime expression such as
    ``$response.body#/id``."""
    return {
        "operationRef": operation_ref(method, path),
        "parameters": parameters,
        "description": description,
    }
