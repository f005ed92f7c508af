"""The OpenAPI document of the management API and its pages under ``/schema``.

``/schema`` (and ``/schema/swagger``) is Swagger UI, run from Clicktrail's own static files (no
CDN, no inline script: the page's CSP allows scripts, styles and requests from this origin only);
``/schema/openapi.json`` and ``/schema/openapi.yaml`` are the document itself. One UI is enough:
Swagger UI reads OpenAPI 3.1, tries requests with an API key and needs no inline style, which
ReDoc, Stoplight Elements and RapiDoc would (Litestar loads all of them from CDNs by default).

Request bodies are described by msgspec's own JSON Schema of their structs, which keeps every
bound of ``backend.domain.affiliate.schemas`` (Litestar's generator drops the bounds inside unions,
zero minimums and the bounds of list items) and says that unknown fields are refused.
"""

from __future__ import annotations

import dataclasses
from html import escape
from typing import Any

import msgspec
from litestar import Request, Router
from litestar.datastructures import ResponseHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import OpenAPIRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
    SecurityRequirement,
    SecurityScheme,
)
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition

from backend.web.security_headers import OWN_SCRIPTS_CSP

DOCS_CSP = OWN_SCRIPTS_CSP.replace("script-src 'self';", "script-src 'self'; connect-src 'self';")
API_KEY_SCHEME = "apiKey"
API_KEY: list[SecurityRequirement] = [{API_KEY_SCHEME: []}]
"""The security requirement of the operations that take an API key (``Authorization: Bearer``)."""

_SCHEMA_FIELDS = {
    field.metadata.get("alias", field.name): field.name for field in dataclasses.fields(Schema)
}


def _as_litestar(json_schema: dict[str, Any], components: dict[str, Any] | None = None) -> Schema:
    """A JSON Schema as Litestar's ``Schema``; a struct nested in a request body (a reference
    to ``components``) is written out in place, so each body's schema stands alone."""
    if "$ref" in json_schema and components is not None:
        return _as_litestar(components[json_schema["$ref"].rsplit("/", 1)[1]], components)
    values: dict[str, Any] = {}
    for key, value in json_schema.items():
        if key in ("anyOf", "allOf", "oneOf"):
            value = [_as_litestar(item, components) for item in value]
        elif key == "items":
            value = _as_litestar(value, components)
        elif key == "properties":
            value = {name: _as_litestar(item, components) for name, item in value.items()}
        elif key == "additionalProperties" and isinstance(value, dict):
            value = _as_litestar(value, components)
        elif key == "type":
            value = OpenAPIType(value)
        elif key == "format":
            value = OpenAPIFormat(value)
        values[_SCHEMA_FIELDS[key]] = value
    return Schema(**values)


class RequestBodySchemas(OpenAPISchemaPlugin):
    """Structs that refuse unknown fields (the request bodies), described by msgspec."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        struct = field_definition.annotation
        return (
            isinstance(struct, type)
            and issubclass(struct, msgspec.Struct)
            and struct.__struct_config__.forbid_unknown_fields
        )

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        struct = field_definition.annotation
        _, components = msgspec.json.schema_components([struct])
        described = _as_litestar(components[struct.__name__], components)
        schema: Schema = schema_creator.create_component_schema(
            field_definition, required=list(described.required or []), property_fields={}
        )
        schema.properties = described.properties
        schema.additional_properties = False
        schema.description = described.description
        return schema


def raw_body_operation(struct: type[msgspec.Struct]) -> type[Operation]:
    """An ``operation_class`` that declares ``struct`` as the request body of a handler that
    reads its body itself (to keep what it refuses as a rejected event, which Litestar's own
    decoding would answer before the handler runs)."""
    _, components = msgspec.json.schema_components([struct])
    schema = _as_litestar(components[struct.__name__], components)
    schema.additional_properties = False
    body = RequestBody(required=True, content={"application/json": OpenAPIMediaType(schema)})

    @dataclasses.dataclass
    class RawBodyOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = body

    return RawBodyOperation


class SwaggerPage(OpenAPIRenderPlugin):
    """Swagger UI from ``static/vendor/swagger-ui``, started by ``static/api-docs.js``."""

    def __init__(self) -> None:
        super().__init__(path=["/", "/swagger"])

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = escape(str(openapi_schema["info"]["title"]))
        schema_url = escape(self.get_openapi_json_route(request))
        return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} API</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css"></head>
<body><div id="swagger-ui" data-schema="{schema_url}"></div>
<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/api-docs.js"></script>
</body>
</html>
""".encode()


def openapi_config() -> OpenAPIConfig:
    docs = Router(
        "/schema",
        route_handlers=[],
        include_in_schema=False,
        response_headers=[ResponseHeader(name="Content-Security-Policy", value=DOCS_CSP)],
    )
    return OpenAPIConfig(
        title="Clicktrail",
        version="1",
        openapi_router=docs,
        render_plugins=[SwaggerPage(), YamlRenderPlugin()],
        components=Components(
            security_schemes={
                API_KEY_SCHEME: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="An API key from `clicktrail apikey create` or the admin pages.",
                )
            }
        ),
    )
