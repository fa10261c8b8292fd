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
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from . import pixels
from .choices import FormChoices, Store
from .client import (
    DEFAULT_URL,
    AcetateClient,
    EventStream,
    Http,
    ServerError,
    error_from_event,
)
from .inputs import (
    Document,
    Documents,
    Placement,
    UserError,
    collect_images,
    collect_layout,
    generatable,
    layout_lists,
    replaced_nodes,
)
from .insertion import Downloads, document_options
from .loras import (
    LoraRow,
)
from .observable import Observable, Property
from .protocol import (
    JobEvent,
    LayerRecord,
    ModeInfo,
    ModelsInfo,
    ModesInfo,
    Parameters,
    ResultRecord,
)
from .sources import picked_layers
from .structure import (
    CONTROL_IMAGE,
)

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


class Model(FormChoices, Observable):
    """Everything the Acetate docker shows and does."""

    server_url = Property(DEFAULT_URL, persist=True)
    token = Property("", persist=True)
    connected = Property(False)
    connection_text = Property("Not connected")
    #: The server answers but speaks another protocol version (too old, or too new).
    server_too_old = Property(False)
    models = Property(ModelsInfo())
    modes = Property(ModesInfo())
    model_name = Property("", persist=True)
    mode = Property("fg", persist=True)
    prompt = Property("")
    seed = Property(0)
    random_seed = Property(True, persist=True)
    batch = Property(1, persist=True)
    #: Transparent layers go in opaque with their alpha in a transparency mask (insertion.py).
    alpha_mask = Property(False, persist=True)
    #: Option values the user chose, by name (the rest follow the mode's defaults).
    option_values: Property[dict[str, Any]] = Property({})
    #: List inputs by field: the items, each a dict of its item options.
    list_values: Property[dict[str, tuple[dict[str, Any], ...]]] = Property({})
    #: The layout group (node id) list inputs with regions are read from; "": the active
    #: layer, which must then be a group.
    layout_group = Property("")
    #: Optional inputs the user wants generated instead of read (scene's background).
    generated_inputs: Property[tuple[str, ...]] = Property(())
    #: The source the user picked for inputs with `other_sources`, by field (decompose's
    #: image: "canvas" for the whole canvas instead of the active layer).
    input_sources: Property[dict[str, str]] = Property({})
    #: The LayerDiffusion file picked per mode, family and part (`layer_files.choice_key`;
    #: "" or absent: the server's default file).
    file_choices: Property[dict[str, str]] = Property({})
    #: Where each picked input is read from, by `sources.choice_key` ("" or absent: its
    #: declared source; `layer`: the active layer; else a layer's node id).
    source_choices: Property[dict[str, str]] = Property({})
    #: The LoRA rows per mode and family (`loras.rows_key`).
    lora_choices: Property[dict[str, tuple[LoraRow, ...]]] = Property({})
    #: The layer (node id) the Structure section reads; "": no structure.
    structure_layer = Property("")
    busy = Property(False)
    progress = Property(0.0)
    status = Property("")
    preview = Property(b"")
    error = Property("")
    mode_problem = Property("")
    history: Property[tuple[HistoryItem, ...]] = Property(())
    #: The last result's groups can still be removed with `undo_result`.
    can_undo_result = Property(False)

    def __init__(
        self,
        documents: Documents,
        http: Http,
        run: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
        store: Store | None = None,
    ) -> None:
        self.documents = documents
        self.http = http
        self._run = run
        self.store = store
        self.client: AcetateClient | None = None
        self.stream: EventStream | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self.job_id: str | None = None
        self._connected_text = ""
        self._family: str | None = None
        self._stored_loaded: set[str] = set()
        self._last_result: tuple[Document, list[str]] | None = None
        #: What the last result hid: its layout group or the layers it replaces (shown again
        #: by `undo_result`).
        self._hidden_source: tuple[Document, list[str]] | None = None
        #: What the running job's result replaces, hidden once its first layer is in.
        self._source_to_hide: tuple[Document, list[str]] | None = None
        #: What the last job did, in order ("inserted <file>", "done"): for tests and logs.
        self.timeline: list[str] = []
        #: Per layer file of the last job: seconds from taking its `layer_ready` event to its
        #: insertion (download and conversion included; a layer that waits for the lowest
        #: layer of its group counts until it is handed over to wait).
        self.insert_seconds: dict[str, float] = {}
        self.changed("models").connect(lambda _: self._models_loaded())
        self.changed("modes").connect(lambda _: self._modes_loaded())
        self.changed("model_name").connect(lambda _: self._model_chosen())
        self.changed("mode").connect(lambda _: self._mode_chosen())
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
            modes = await client.modes()
            self.models = await client.models()
        except ServerError as error:
            self.server_too_old = error.code in ("too_old", "too_new")
            self.connection_text = error.message
            return False
        self.server_too_old = False
        self.modes = modes
        self._connected_text = (
            f"Connected: Acetate {health['version']} (protocol {health['api_version']}) "
            f"on {health['device']}"
        )
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

    def _modes_loaded(self) -> None:
        self._load_stored_options()
        if self.modes.modes and self.modes.get(self.mode) is None:
            self.mode = self.modes.modes[0].name  # → _mode_chosen
        else:
            self._mode_chosen()

    def _model_chosen(self) -> None:
        """Another model family: options with per-family defaults (size…) follow it."""
        base = self.models.base(self.model_name)
        family = base.family if base is not None else None
        if family is not None and self._family is not None and family != self._family:
            keep = {
                name: value
                for name, value in self.option_values.items()
                if not self._has_family_defaults(name)
            }
            if keep != self.option_values:
                self.option_values = keep
        if family is not None:
            self._family = family
        self._check_mode()

    def _mode_chosen(self) -> None:
        mode = self.mode_info
        if mode is not None:
            lists = dict(self.list_values)
            for item in mode.lists:
                if item.field not in lists:
                    lists[item.field] = tuple(item.new_item() for _ in range(item.min_items))
            self.list_values = lists
        self._check_mode()

    def _check_mode(self) -> None:
        mode = self.mode_info
        problem = self.models.mode_problem(self.model_name, self.mode) or ""
        family = mode.family(self._family) if mode is not None and self._family else None
        if not problem and family is not None and not family.supported:
            problem = family.reason or f"{mode.label} does not run on {family.label} models"
        self.mode_problem = problem

    # -- generating -----------------------------------------------------------------------

    def parameters(self, mode: ModeInfo) -> Parameters:
        """The request fields from the form (images and selection bounds come later)."""
        return Parameters(
            mode=mode.name,
            prompt=self.prompt.strip(),
            model=self.model_name or None,
            seed=None if self.random_seed else int(self.seed),
            batch=int(self.batch),
            options=self.request_options(mode),
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
            self.busy, self.job_id, self._source_to_hide = False, None, None
        return None

    async def _generate(self) -> ResultRecord | None:
        document = self.documents.active()
        if document is None:
            raise UserError("Open or create a document first.")
        self._check_prompt(self.mode_info)
        if self.mode_info is not None and layout_lists(self.mode_info):
            self.layout_group_id(document)  # say so before connecting
        if self.client is None or self.stream is None or not self.connected:
            await self._connect_now()
        client, stream, mode = self.client, self.stream, self.mode_info
        assert client is not None and stream is not None
        if mode is None:
            raise UserError(f"The server has no mode {self.mode!r}: pick another one.")
        self._check_prompt(mode)
        params = self.parameters(mode)
        params.options.update(document_options(mode, document.color_depth))
        layout = self.layout_group_id(document) if layout_lists(mode) else None
        masks: dict[str, Any] = {}
        if layout is not None:
            lists, masks = collect_layout(mode, document, layout)
            params.options.update(lists)
        skip = {image.field for image, _ in generatable(mode)} & set(self.generated_inputs)
        skip.add(CONTROL_IMAGE)  # read from the structure layer, not the input's source
        chosen = self.input_sources
        layers = picked_layers(mode, self.source_choices, document.active_layer_id())
        images, params.selection_bounds = collect_images(
            mode, document, params.options, skip=skip, without=layout, chosen=chosen, layers=layers
        )
        if "control" in params.options:
            images[CONTROL_IMAGE] = self.read_structure(document)
        counts = {k: len(v) for k, v in params.options.items() if isinstance(v, list)}
        # The result stacks right above what it replaces (a layout group, a replaced layer).
        if layout is not None:
            replaced = [layout]
        else:
            replaced = replaced_nodes(mode, document, images, chosen)
        anchor = replaced[-1] if replaced else None
        anchor = anchor or document.active_layer_id() or document.top_layer_id()
        placement = Placement(document, mode, params.prompt, counts, anchor, images=list(images))
        images.update(masks)
        self._hidden_source = None
        self._source_to_hide = (document, replaced) if replaced else None
        self.timeline, self.insert_seconds = [], {}
        self.can_undo_result, self._last_result = False, None
        self.status = "Sending…"
        job_id = await client.submit(params, images)
        self.job_id = job_id
        self.status = "Queued"
        downloads = Downloads.of(params.options, document.color_depth, self.alpha_mask)
        try:
            record = await self._follow(stream, job_id, client, placement, downloads)
        finally:
            if placement.groups:
                self._last_result = (document, placement.group_ids)
        if record is None:
            return None
        await self._insert_rest(client, record, placement, downloads)
        self._last_result = (document, placement.group_ids)
        self.can_undo_result = bool(placement.groups)
        count = len(placement.inserted)
        self.status = f"Done: {count} layer{'s' if count != 1 else ''} inserted in {document.name}"
        self.history = (self._history_item(client, record, downloads), *self.history)[:50]
        self.progress = 1.0
        if self.random_seed and "seed" in record.parameters:
            self.seed = int(record.parameters["seed"])  # shown, so a result can be redone
        return record

    def _check_prompt(self, mode: ModeInfo | None) -> None:
        if mode is not None and mode.prompt_required and not self.prompt.strip():
            raise UserError("Type a prompt first.")

    async def _follow(
        self,
        stream: EventStream,
        job_id: str,
        client: AcetateClient,
        placement: Placement,
        downloads: Downloads,
    ) -> ResultRecord | None:
        """Follow the job, inserting each layer as it is ready; None when it was cancelled."""
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
                elif event.type is JobEvent.layer_ready and isinstance(fields.get("layer"), dict):
                    layer = LayerRecord.from_json(fields["layer"])
                    ready = time.perf_counter()
                    await self._insert_layer(client, job_id, layer, placement, downloads)
                    self.insert_seconds[layer.file] = time.perf_counter() - ready
                elif event.type is JobEvent.done:
                    self.timeline.append("done")
                    return ResultRecord.from_json(fields["result"])
                elif event.type is JobEvent.cancelled:
                    self.status = "Cancelled"
                    return None
                elif event.type is JobEvent.error:
                    raise error_from_event(fields)
        finally:
            stream.unsubscribe(job_id)

    async def _insert_layer(
        self,
        client: AcetateClient,
        job_id: str,
        layer: LayerRecord,
        placement: Placement,
        downloads: Downloads,
    ) -> None:
        layer_pixels = await downloads.get(client, job_id, layer)
        if not placement.document.alive():
            raise UserError("The document was closed before the result arrived.")
        before = len(placement.inserted)
        placement.add(layer, layer_pixels)
        for done in placement.inserted[before:]:
            self.timeline.append(f"inserted {done.file}")
        if len(placement.inserted) > before:
            self.status = f"Inserted {layer.name}"
            self._hide_source()

    def _hide_source(self) -> None:
        """Once results are in, what they replace (a layout group, the layer a decompose split)
        is hidden, not deleted: the user compares, and "Undo whole result" shows it again."""
        target, self._source_to_hide = self._source_to_hide, None
        if target is None:
            return
        document, nodes = target
        hidden = [node for node in nodes if document.exists(node) and document.visible(node)]
        for node in hidden:
            document.set_visible(node, False)
        if hidden:
            self._hidden_source = (document, hidden)

    async def _insert_rest(
        self,
        client: AcetateClient,
        record: ResultRecord,
        placement: Placement,
        downloads: Downloads,
    ) -> None:
        """The record's layers that did not arrive as `layer_ready` (or still wait), in."""
        for layer in record.layers:
            if all(done.file != layer.file for done in placement.inserted):
                await self._insert_layer(client, record.id, layer, placement, downloads)
        before = len(placement.inserted)
        placement.finish()
        for done in placement.inserted[before:]:
            self.timeline.append(f"inserted {done.file}")
        if len(placement.inserted) > before:
            self._hide_source()

    def undo_result(self) -> int:
        """Remove every group the last result inserted (one click) and show again what it
        hid (its layout group, the layers it replaces); returns how many groups."""
        last, self._last_result = self._last_result, None
        hidden, self._hidden_source = self._hidden_source, None
        self.can_undo_result = False
        if last is None:
            return 0
        document, groups = last
        removed = document.remove(groups) if document.alive() else 0
        if hidden is not None and hidden[0].alive():
            for node in hidden[1]:
                if hidden[0].exists(node):
                    hidden[0].set_visible(node, True)
        self.status = f"Removed {removed} group{'s' if removed != 1 else ''} of the last result"
        return removed

    @staticmethod
    def _history_item(
        client: AcetateClient, record: ResultRecord, downloads: Downloads
    ) -> HistoryItem:
        thumb = None
        if record.layers and record.layers[0].file in downloads.by_file:
            first = record.layers[0]
            data = downloads.by_file[first.file].rgba8()
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
            record = item.record
            mode = self.modes.get(record.mode) or ModeInfo(record.mode, record.mode)
            anchor = document.active_layer_id() or document.top_layer_id()
            placement = Placement(document, mode, record.prompt, record.counts(), anchor)
            self._hidden_source = None
            self.status = "Downloading layers…"
            downloads = Downloads.of(record.parameters, document.color_depth, self.alpha_mask)
            await self._insert_rest(client, record, placement, downloads)
            self._last_result = (document, placement.group_ids)
            self.can_undo_result = bool(placement.groups)
            count = len(placement.inserted)
            self.status = f"Done: {count} layer{'s' if count != 1 else ''} inserted again"
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
