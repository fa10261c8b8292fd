"""Response shapes that exist only in the HTTP API (the rest live in `acetate.protocol`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Health(BaseModel):
    """GET /api/health."""

    model_config = ConfigDict(extra="forbid")

    version: str
    device: str
    queue_length: int = Field(description="Waiting jobs plus the running one")
    running: str | None = Field(description="Id of the running job")


class ModelsInfo(BaseModel):
    """GET /api/models: the model store's description (`ModelStore.describe()`)."""

    model_config = ConfigDict(extra="allow")

    bases: list[dict[str, Any]] = Field(default_factory=list)
