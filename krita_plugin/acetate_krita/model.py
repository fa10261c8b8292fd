"""The docker's state and actions: connect, generate, cancel, insert again, open the PSD.

Qt-free and Krita-free: documents come in through the `Documents` port (inputs.py; Krita's
side is document.py) and HTTP through the client's transport, so the logic is testable
anywhere. Every action is a coroutine on the plugin's event loop; failures end up in
`error` in plain words.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from . import pixels
from .client import (
    DEFAULT_URL,
    AcetateClient,
    EventStream,
    Http,
    ServerError,
    error_from_event,
)
from .inputs import Document, Documents, UserError, collect_images
from .observable import Observable, Property
from .protocol import MODE_OPTIONS, SIZE, JobEvent, ModelsInfo, Parameters, ResultRecord

log = logging.getLogger(__name__)

#: A job whose server has been unreachable this long fails instead of waiting on.
LOST_JOB_AFTER_S = 10.0
#: While the server cannot be reached, try again this often (the status stays live).
RETRY_S = 10.0
THUMBNAIL_SIDE = 96


@dataclass(frozen=True)
class HistoryItem:
    """A finished job the docker can insert again or open as PSD."""

    record: ResultRecord
    server_url: str
    thumbnail: tuple[bytes, int, int] | None

    @property
    def title(self) -> str:
        seed = self.record.parameters.get("seed")
        return f"{self.record.prompt or self.record.mode} · {self.record.mode} · seed {seed}"


class Model(Observable):
    """Everything the Acetate docker shows and does."""

    server_url = Property(DEFAULT_URL, persist=True)
    token = Property("", persist=True)
    connected = Property(False)
    connection_text = Property("Not connected")
    models = Property(ModelsInfo())
    model_name = Property("", persist=True)
    mode = Property("fg", persist=True)
    prompt = Property("")
    negative_prompt = Property("", persist=True)
    fg_prompt = Property("")
    bg_prompt = Property("")
    blend_prompt = Property("")
    seed = Property(0)
    random_seed = Property(True, persist=True)
    steps = Property(0, persist=True)  # 0: the server's default for model and mode
    cfg = Property(0.0, persist=True)  # 0: the server's default
    width = Property(1024)
    height = Property(1024)
    strength = Property(0.7, persist=True)
    scale = Property(2.0, persist=True)
    batch = Property(1, persist=True)
    decode = Property("tta", persist=True)
    busy = Property(False)
    progress = Property(0.0)
    status = Property("")
    preview = Property(b"")
    error = Property("")
    mode_problem = Property("")
    history: Property[tuple[HistoryItem, ...]] = Property(())

    def __init__(
        self,
        documents: Documents,
        http: Http,
        run: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
    ) -> None:
        self.documents = documents
        self.http = http
        self._run = run
        self.client: AcetateClient | None = None
        self.stream: EventStream | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self.job_id: str | None = None
        self._connected_text = ""
        self.changed("models").connect(lambda _: self._models_loaded())
        self.changed("model_name").connect(lambda _: self._model_chosen())
        self.changed("mode").connect(lambda _: self._check_mode())
        self.changed("server_url").connect(lambda _: self.reconnect())
        self.changed("token").connect(lambda _: self.reconnect())

    # -- connection -----------------------------------------------------------------------

    def reconnect(self, delay: float = 0.0) -> asyncio.Task[None]:
        """Connect to `server_url` with `token` now (after `delay`), retrying until it works."""
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()

        async def keep_trying() -> None:
            await asyncio.sleep(delay)
            while not await self.connect():
                await asyncio.sleep(RETRY_S)

        self._connect_task = self._run(keep_trying())
        return self._connect_task

    async def connect(self) -> bool:
        """Check the server, load its models, and open the event WebSocket."""
        self.disconnect()
        self.connection_text = f"Connecting to {self.server_url}…"
        try:
            client = AcetateClient(self.http, self.server_url, self.token)
            health = await client.health()
            self.models = await client.models()
        except ServerError as error:
            self.connection_text = error.message
            return False
        self._connected_text = f"Connected: Acetate {health['version']} on {health['device']}"
        self.client, self.stream = client, EventStream(client, self._on_stream_status)
        self._stream_task = self._run(self.stream.run())
        # If it takes longer, the stream keeps trying and reports why in connection_text.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stream.connected.wait(), 10.0)
        return True

    async def _connect_now(self) -> None:
        """Connect before a job, or say why not (and keep retrying in the background)."""
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
        if not await self.connect():
            self.reconnect(RETRY_S)
            raise UserError(self.connection_text)

    def disconnect(self) -> None:
        """Drop the event stream (a later `connect` opens a new one)."""
        if self._stream_task is not None:
            self._stream_task.cancel()
        self._stream_task, self.stream, self.client = None, None, None
        self.connected = False

    def close(self) -> None:
        """Stop connecting and listening (Krita is closing)."""
        if self._connect_task is not None:
            self._connect_task.cancel()
        self.disconnect()

    def _on_stream_status(self, connected: bool, error: str | None) -> None:
        self.connection_text = self._connected_text if connected else (error or "Disconnected")
        self.connected = connected

    def _models_loaded(self) -> None:
        bases = self.models.bases
        if bases and self.models.base(self.model_name) is None:
            self.model_name = self.models.default or bases[0].name  # → _model_chosen
        else:
            self._model_chosen()

    def _model_chosen(self) -> None:
        """A model's family decides the default size (SDXL 1024, SD1.5 512)."""
        base = self.models.base(self.model_name)
        if base is not None:
            self.width = self.height = base.native_size
        self._check_mode()

    def _check_mode(self) -> None:
        self.mode_problem = self.models.mode_problem(self.model_name, self.mode) or ""

    # -- generating -----------------------------------------------------------------------

    def parameters(self) -> Parameters:
        """The request fields from the form (images and selection bounds come later)."""
        layer_prompts = {"foreground": self.fg_prompt, "background": self.bg_prompt}
        layer_prompts["blended"] = self.blend_prompt
        return Parameters(
            mode=self.mode,
            prompt=self.prompt.strip(),
            negative_prompt=self.negative_prompt.strip(),
            model=self.model_name or None,
            seed=None if self.random_seed else int(self.seed),
            steps=int(self.steps) or None,
            cfg=float(self.cfg) or None,
            width=int(self.width) if SIZE in MODE_OPTIONS[self.mode] else None,
            height=int(self.height) if SIZE in MODE_OPTIONS[self.mode] else None,
            batch=int(self.batch),
            strength=float(self.strength),
            scale=float(self.scale),
            decode=self.decode,
            layer_prompts=layer_prompts,
        )

    async def generate(self) -> ResultRecord | None:
        """Send the active document's inputs, follow the job, insert its layers."""
        if self.busy:
            return None
        self.busy, self.error, self.progress, self.preview = True, "", 0.0, b""
        try:
            return await self._generate()
        except (ServerError, UserError) as error:
            self.error, self.status = str(error), ""
        except asyncio.CancelledError:
            self.status = "Stopped"
            raise
        except Exception as error:  # a bug: say so in the docker instead of crashing Krita
            log.exception("generate failed")
            self.error, self.status = f"Unexpected error ({type(error).__name__}): {error}", ""
        finally:
            self.busy, self.job_id = False, None
        return None

    async def _generate(self) -> ResultRecord | None:
        document = self.documents.active()
        if document is None:
            raise UserError("Open or create a document first.")
        if self.mode != "upscale" and not self.prompt.strip():
            raise UserError("Type a prompt first.")
        if self.client is None or self.stream is None or not self.connected:
            await self._connect_now()
        client, stream = self.client, self.stream
        assert client is not None and stream is not None
        params = self.parameters()
        images, params.selection_bounds = collect_images(self.mode, document)
        above = document.active_layer_id()
        self.status = "Sending…"
        job_id = await client.submit(params, images)
        self.job_id = job_id
        self.status = "Queued"
        record = await self._follow(stream, job_id)
        if record is None:
            return None
        layer_pixels = await self._insert(client, record, document, above)
        self.history = (self._history_item(client, record, layer_pixels), *self.history)[:50]
        self.progress = 1.0
        if self.random_seed and "seed" in record.parameters:
            self.seed = int(record.parameters["seed"])  # shown, so a result can be redone
        return record

    async def _follow(self, stream: EventStream, job_id: str) -> ResultRecord | None:
        """Wait for the job's final event; None when it was cancelled."""
        events = stream.subscribe(job_id)
        try:
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), 1.0)
                except asyncio.TimeoutError:
                    if stream.disconnected_for() > LOST_JOB_AFTER_S:
                        raise ServerError(
                            f"Lost the connection to the server at {stream.client.url} while "
                            "the job was running. Is the server still running?",
                            code="unreachable",
                        ) from None
                    continue
                fields = event.fields
                if event.type is JobEvent.queued:
                    self.status = f"Queued (position {fields.get('position', '?')})"
                elif event.type is JobEvent.started:
                    self.status = "Generating…"
                elif event.type is JobEvent.progress:
                    step, total = int(fields.get("step", 0)), int(fields.get("total", 1)) or 1
                    self.progress = step / total
                    self.status = f"Step {step} of {total}"
                elif event.type is JobEvent.preview and event.binary:
                    self.preview = event.binary
                elif event.type is JobEvent.done:
                    return ResultRecord.from_json(fields["result"])
                elif event.type is JobEvent.cancelled:
                    self.status = "Cancelled"
                    return None
                elif event.type is JobEvent.error:
                    raise error_from_event(fields)
        finally:
            stream.unsubscribe(job_id)

    async def _insert(
        self,
        client: AcetateClient,
        record: ResultRecord,
        document: Document,
        above: str | None,
    ) -> dict[str, bytes]:
        """Download every layer of `record` and insert them; returns the pixels by file."""
        self.status = "Downloading layers…"
        layer_pixels = {}
        for layer in record.layers:
            layer_pixels[layer.file] = await client.layer_pixels(record.id, layer)
        if not document.alive():
            raise UserError("The document was closed before the result arrived.")
        document.insert(record, layer_pixels, above)
        count = len(record.layers)
        self.status = f"Done: {count} layer{'s' if count != 1 else ''} inserted in {document.name}"
        return layer_pixels

    @staticmethod
    def _history_item(
        client: AcetateClient, record: ResultRecord, layer_pixels: dict[str, bytes]
    ) -> HistoryItem:
        thumb = None
        if record.layers:
            first = record.layers[0]
            data = layer_pixels[first.file]
            thumb = pixels.thumbnail(data, first.width, first.height, THUMBNAIL_SIDE)
        return HistoryItem(record, client.url, thumb)

    def cancel(self) -> asyncio.Task[None] | None:
        """Ask the server to stop the running job (the job then ends as cancelled)."""
        job_id, client = self.job_id, self.client
        if job_id is None or client is None:
            return None

        async def cancel() -> None:
            self.status = "Cancelling…"
            try:
                await client.cancel(job_id)
            except ServerError as error:
                self.error = error.message

        return self._run(cancel())

    # -- history --------------------------------------------------------------------------

    async def insert_again(self, item: HistoryItem) -> None:
        """Insert a past result into the active document (downloaded again from the server)."""
        self.error = ""
        try:
            document = self.documents.active()
            if document is None:
                raise UserError("Open or create a document first.")
            client = self._client_for(item)
            await self._insert(client, item.record, document, document.active_layer_id())
        except (ServerError, UserError) as error:
            self.error = str(error)

    async def open_psd(self, item: HistoryItem) -> str | None:
        """Download the job's layered PSD and open it as a new document; returns its path."""
        self.error = ""
        try:
            data = await self._client_for(item).psd(item.record.id)
            folder = os.path.join(tempfile.gettempdir(), "acetate")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{item.record.id}.psd")
            with open(path + ".tmp", "wb") as file:
                file.write(data)
            os.replace(path + ".tmp", path)
            self.documents.open(path)
            self.status = f"Opened {os.path.basename(path)}"
            return path
        except ServerError as error:
            self.error = error.message
        except OSError as error:
            self.error = f"Could not save the PSD: {error}"
        return None

    def _client_for(self, item: HistoryItem) -> AcetateClient:
        if self.client is not None and self.client.url == item.server_url:
            return self.client
        return AcetateClient(self.http, item.server_url, self.token)
