"""The OpenAPI 3.1 document, built from the same pydantic models that validate requests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from acetate.api.schemas import Health, ModelsInfo, WsTicket
from acetate.protocol import (
    IMAGE_FIELDS,
    ErrorBody,
    GenerateRequest,
    JobCreated,
    JobList,
    JobRecord,
)

SCHEMAS: tuple[type[BaseModel], ...] = (
    GenerateRequest,
    JobRecord,
    JobList,
    JobCreated,
    ErrorBody,
    Health,
    ModelsInfo,
    WsTicket,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {"description": "error", "content": _json(ErrorBody)} for status in statuses
    }


JOB_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "A job id: `j_` followed by 32 hex digits",
    "schema": {"type": "string"},
}

MULTIPART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["request"],
    "properties": {
        "request": {"type": "string", "description": "GenerateRequest JSON without images"},
        **{
            name: {"type": "string", "format": "binary", "description": "PNG or raw bytes"}
            for name in IMAGE_FIELDS
        },
        **{
            f"{name}_{side}": {"type": "integer", "description": "size of raw image data"}
            for name in IMAGE_FIELDS
            for side in ("width", "height")
        },
    },
}


def build_openapi(version: str) -> dict[str, Any]:
    _, defs = models_json_schema(
        [(model, "validation") for model in SCHEMAS],
        ref_template="#/components/schemas/{model}",
    )
    common = _errors(400, 401, 403)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Acetate local generation server",
            "version": version,
            "description": "Transparent layers with LayerDiffusion. Events: WebSocket /api/ws "
            "(see docs/protocol.md).",
        },
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            "/api/health": {
                "get": {
                    "operationId": "health",
                    "responses": {"200": {"description": "ok", "content": _json(Health)}, **common},
                }
            },
            "/api/models": {
                "get": {
                    "operationId": "models",
                    "responses": {
                        "200": {"description": "ok", "content": _json(ModelsInfo)},
                        **common,
                    },
                }
            },
            "/api/jobs": {
                "post": {
                    "operationId": "submitJob",
                    "requestBody": {
                        "required": True,
                        "content": {
                            **_json(GenerateRequest),
                            "multipart/form-data": {"schema": MULTIPART_SCHEMA},
                        },
                    },
                    "responses": {
                        "202": {"description": "queued", "content": _json(JobCreated)},
                        **common,
                        **_errors(408, 413, 415, 429),
                    },
                },
                "get": {
                    "operationId": "listJobs",
                    "parameters": [
                        {
                            "name": "client_id",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 128},
                        }
                    ],
                    "responses": {
                        "200": {"description": "ok", "content": _json(JobList)},
                        **common,
                    },
                },
            },
            "/api/jobs/{id}": {
                "parameters": [JOB_ID_PARAM],
                "get": {
                    "operationId": "getJob",
                    "responses": {
                        "200": {"description": "ok", "content": _json(JobRecord)},
                        **common,
                        **_errors(404),
                    },
                },
                "delete": {
                    "operationId": "deleteJob",
                    "description": "Queued: cancelled now (200). Running: cancelled at the next "
                    "step (202). Finished: its files are deleted (204).",
                    "responses": {
                        "200": {"description": "cancelled", "content": _json(JobRecord)},
                        "202": {"description": "cancelling", "content": _json(JobRecord)},
                        "204": {"description": "deleted"},
                        **common,
                        **_errors(404),
                    },
                },
            },
            "/api/jobs/{id}/layers/{file}": {
                "parameters": [
                    JOB_ID_PARAM,
                    {
                        "name": "file",
                        "in": "path",
                        "required": True,
                        "description": "A `file` from the job's result record",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["png", "rgba"]},
                    },
                ],
                "get": {
                    "operationId": "getLayer",
                    "responses": {
                        "200": {
                            "description": "PNG, or raw straight RGBA with X-Acetate-* headers",
                            "content": {
                                "image/png": {"schema": {"type": "string", "format": "binary"}},
                                "application/octet-stream": {
                                    "schema": {"type": "string", "format": "binary"}
                                },
                            },
                        },
                        **common,
                        **_errors(404, 409),
                    },
                },
            },
            "/api/jobs/{id}/result.psd": {
                "parameters": [JOB_ID_PARAM],
                "get": {
                    "operationId": "getPsd",
                    "responses": {
                        "200": {
                            "description": "layered PSD, built on the first request",
                            "content": {
                                "image/vnd.adobe.photoshop": {
                                    "schema": {"type": "string", "format": "binary"}
                                }
                            },
                        },
                        **common,
                        **_errors(404, 409),
                    },
                },
            },
            "/api/jobs/{id}/result.ora": {
                "parameters": [JOB_ID_PARAM],
                "get": {
                    "operationId": "getOra",
                    "responses": {
                        "200": {
                            "description": "layered OpenRaster (.ora), built on the first request",
                            "content": {
                                "image/openraster": {
                                    "schema": {"type": "string", "format": "binary"}
                                }
                            },
                        },
                        **common,
                        **_errors(404, 409),
                    },
                },
            },
            "/api/ws-ticket": {
                "post": {
                    "operationId": "wsTicket",
                    "description": "A single-use ticket for `/api/ws?ticket=…`, valid 60 s, "
                    "bound to the caller's token. Needs the `X-Acetate-Client: <name>/<version>` "
                    "header (e.g. `photoshop/0.3.0`); a WebSocket sent with `Origin: null` is "
                    "only admitted with such a ticket.",
                    "parameters": [
                        {
                            "name": "X-Acetate-Client",
                            "in": "header",
                            "required": True,
                            "schema": {
                                "type": "string",
                                "pattern": "^[A-Za-z][A-Za-z0-9_-]{0,31}/[A-Za-z0-9_.+-]{1,40}$",
                            },
                        }
                    ],
                    "responses": {
                        "200": {"description": "ok", "content": _json(WsTicket)},
                        **common,
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "responses": {"200": {"description": "this document"}, **common},
                }
            },
        },
    }
