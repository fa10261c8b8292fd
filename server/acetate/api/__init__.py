"""The HTTP + WebSocket API: `create_app(config, engine, store)` in `acetate.api.app`.

Protocol reference: docs/protocol.md (the OpenAPI document is served at /api/openapi.json).
"""
