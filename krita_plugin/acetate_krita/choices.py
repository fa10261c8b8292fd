"""What the docker's form holds per mode: option values, list items, picked LayerDiffusion
files, source layers, LoRA rows and the structure layer, remembered in the settings store.

`FormChoices` is the part of `Model` (model.py) that turns those choices into request fields;
it reads the model's observable properties and writes their new values back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .inputs import Document, UserError, layout_lists
from .insertion import DOCUMENT_OPTIONS
from .layer_files import FilePart, choice_key, chosen, file_parts, stored_choices
from .loras import (
    LoraRow,
    fitting_names,
    format_rows,
    request_loras,
    rows_key,
    split_rows,
    stored_rows,
    takes_loras,
)
from .protocol import ModeInfo, ModelsInfo, ModesInfo, OptionInfo, WireImage
from .settings import format_value
from .sources import DECLARED
from .sources import choice_key as source_key
from .sources import stored_choices as stored_sources
from .structure import fitting_controlnets, over_white, structure_fields, takes_structure


class Store(Protocol):
    """Where option values persist (Krita's settings; see settings.py)."""

    def read(self, name: str) -> str: ...

    def write(self, name: str, value: str) -> None: ...


#: Options the docker edits in its Structure section instead of one editor each (with the
#: ones depending on them): sent only with a structure layer (structure.py).
BY_STRUCTURE = frozenset({"control"})


def offered(mode: ModeInfo) -> tuple[OptionInfo, ...]:
    """The options of `mode` the docker shows one editor each for and sends as they are
    (those that follow the document, insertion.DOCUMENT_OPTIONS, are filled when sending)."""
    hidden = set(BY_STRUCTURE) | set(DOCUMENT_OPTIONS)
    return tuple(
        option
        for option in mode.options
        if option.name not in hidden and (option.depends_on or "") not in hidden
    )


def parse_option(option: OptionInfo, text: str) -> Any:
    """A value stored in the settings back as the option's type; None if unusable."""
    try:
        if option.type == "int":
            value: Any = int(float(text))
        elif option.type == "float":
            value = float(text)
        elif option.type == "bool":
            value = text == "true"
        elif option.type in ("enum", "text"):
            value = text
        else:
            return None
    except ValueError:
        return None
    # Versions before /api/modes stored 0 for "Auto" (steps, cfg): still "the default".
    if option.type in ("int", "float") and option.default is None and value == 0:
        return None
    return value if option.valid(value) else None


class FormChoices:
    """The form's choices per mode and family, and the request fields they make (a mixin of
    `Model`, whose observable properties these annotations name)."""

    modes: ModesInfo
    models: ModelsInfo
    mode: str
    model_name: str
    store: Store | None
    option_values: dict[str, Any]
    list_values: dict[str, tuple[dict[str, Any], ...]]
    file_choices: dict[str, str]
    source_choices: dict[str, str]
    lora_choices: dict[str, tuple[LoraRow, ...]]
    structure_layer: str
    input_sources: dict[str, str]
    generated_inputs: tuple[str, ...]
    layout_group: str
    _family: str | None
    _stored_loaded: set[str]

    # -- modes and options ---------------------------------------------------------------

    @property
    def mode_info(self) -> ModeInfo | None:
        return self.modes.get(self.mode)

    @property
    def family(self) -> str | None:
        base = self.models.base(self.model_name)
        return base.family if base is not None else None

    def _has_family_defaults(self, name: str) -> bool:
        return any(
            option.name == name and option.family_defaults
            for mode in self.modes.modes
            for option in mode.options
        )

    def option_value(self, name: str) -> Any:
        """The option's value: the user's choice, else the mode's default on this family."""
        if name in self.option_values:
            return self.option_values[name]
        mode = self.mode_info
        option = mode.option(name) if mode is not None else None
        return option.default_for(self.family) if option is not None else None

    def set_option(self, name: str, value: Any) -> None:
        """The user chose a value (None: back to the default); persisted except prompts."""
        self.option_values = {**self.option_values, name: value}
        mode = self.mode_info
        option = mode.option(name) if mode is not None else None
        if self.store is not None and option is not None and option.type != "prompts":
            self.store.write(name, "" if value is None else format_value(value))

    def _load_stored_options(self) -> None:
        if self.store is None:
            return
        values = dict(self.option_values)
        for mode in self.modes.modes:
            for option in mode.options:
                if option.name in self._stored_loaded or option.type == "prompts":
                    continue
                self._stored_loaded.add(option.name)
                text = self.store.read(option.name)
                value = parse_option(option, text) if text else None
                if value is not None and option.name not in values:
                    values[option.name] = value
        self.option_values = values
        self.file_choices = {**stored_choices(self.modes, self.store.read), **self.file_choices}
        read = self.store.read
        self.source_choices = {**stored_sources(self.modes, read), **self.source_choices}
        families = {base.family for base in self.models.bases}
        self.lora_choices = {**stored_rows(self.modes, families, read), **self.lora_choices}

    def file_parts(self) -> tuple[FilePart, ...]:
        """The parts the mode loads on the chosen base, with the files that fit each."""
        base = self.models.base(self.model_name)
        return file_parts(self.mode_info, base, self.models.layer_files)

    def layer_file(self, part: str) -> str | None:
        """The file picked for `part` (None: "Default", also when the pick no longer fits)."""
        mode, family = self.mode_info, self.family
        if mode is None or family is None:
            return None
        return chosen(mode, family, self.file_parts(), self.file_choices).get(part)

    def set_layer_file(self, part: str, name: str | None) -> None:
        """Pick the file for `part` of the mode on this family (None: "Default"); persisted."""
        mode, family = self.mode_info, self.family
        if mode is not None and family is not None:
            key = choice_key(mode.name, family, part)
            self.file_choices = {**self.file_choices, key: name or ""}
            if self.store is not None:
                self.store.write(key, name or "")

    def list_items(self, name: str) -> tuple[dict[str, Any], ...]:
        return self.list_values.get(name, ())

    def set_list(self, name: str, items: Sequence[Mapping[str, Any]]) -> None:
        self.list_values = {**self.list_values, name: tuple(dict(item) for item in items)}

    def add_item(self, name: str) -> None:
        mode = self.mode_info
        spec = mode.list_input(name) if mode is not None else None
        items = self.list_items(name)
        if spec is not None and (spec.max_items is None or len(items) < spec.max_items):
            self.set_list(name, (*items, spec.new_item()))

    def remove_item(self, name: str, index: int) -> None:
        mode = self.mode_info
        spec = mode.list_input(name) if mode is not None else None
        items = list(self.list_items(name))
        if spec is not None and 0 <= index < len(items) and len(items) > spec.min_items:
            del items[index]
            self.set_list(name, items)

    def set_item(self, name: str, index: int, key: str, value: Any) -> None:
        items = [dict(item) for item in self.list_items(name)]
        if 0 <= index < len(items):
            items[index][key] = value
            self.set_list(name, items)

    def request_options(self, mode: ModeInfo) -> dict[str, Any]:
        """The option and list fields of the request: only what `mode` lists, and of its
        options only those the user set (the rest are the server's defaults, which the form
        shows: sending them would not be neutral, e.g. one sampler forced on every stage)."""
        data: dict[str, Any] = {}
        for option in offered(mode):
            value = self.option_values.get(option.name)
            if option.type == "prompts":
                value = {k: v.strip() for k, v in (value or {}).items() if v and v.strip()}
                value = value or None
            if value is not None:
                data[option.name] = value
        layout = {spec.field for spec in layout_lists(mode)}
        for spec in mode.lists:
            if spec.field in layout:
                continue  # read from the layout group when generating
            items = [
                {k: v for k, v in item.items() if v is not None}
                for item in self.list_items(spec.field)
            ]
            if items or spec.min_items:
                data[spec.field] = items
        base = self.models.base(self.model_name)
        parts = file_parts(mode, base, self.models.layer_files)
        files = chosen(mode, base.family, parts, self.file_choices) if base is not None else {}
        if files:
            data["layer_files"] = list(files.values())
        data.update(self.structure_options(mode))
        if base is not None and takes_loras(mode, base):
            rows = self.lora_choices.get(rows_key(mode.name, base.family), ())
            loras = request_loras(rows, fitting_names(self.models.loras, base))
            if loras:
                data["loras"] = loras
        return data

    # -- sources and LoRAs ------------------------------------------------------------------

    def source_choice(self, field: str) -> str:
        """Where input `field` of the mode is read from (sources.py; "": its declared source)."""
        mode = self.mode_info
        if mode is None:
            return DECLARED
        return self.source_choices.get(source_key(mode.name, field), DECLARED)

    def set_source_choice(self, field: str, choice: str) -> None:
        """Read input `field` of the mode from `choice` from now on; persisted per mode."""
        mode = self.mode_info
        if mode is not None:
            key = source_key(mode.name, field)
            self.source_choices = {**self.source_choices, key: choice}
            if self.store is not None:
                self.store.write(key, choice)

    def takes_loras(self) -> bool:
        return takes_loras(self.mode_info, self.models.base(self.model_name))

    def lora_names(self) -> list[str]:
        """The LoRAs that run on the chosen base (the rows' choices)."""
        return fitting_names(self.models.loras, self.models.base(self.model_name))

    def embedding_names(self) -> list[str] | None:
        """The embeddings that run on the chosen base; None: the server lists none at all."""
        embeddings = self.models.embeddings
        base = self.models.base(self.model_name)
        return None if embeddings is None else fitting_names(embeddings, base)

    def lora_rows(self) -> tuple[tuple[LoraRow, ...], tuple[str, ...]]:
        """The mode's rows on this family whose LoRA fits the base, and the names of the
        remembered ones the server no longer lists for it (left out, named in a note)."""
        mode, family = self.mode_info, self.family
        if mode is None or family is None:
            return (), ()
        return split_rows(self.lora_choices.get(rows_key(mode.name, family), ()), self.lora_names())

    def set_lora_rows(self, rows: Sequence[LoraRow]) -> None:
        """The user's rows for the mode on this family (those left out are forgotten)."""
        mode, family = self.mode_info, self.family
        if mode is not None and family is not None:
            key = rows_key(mode.name, family)
            self.lora_choices = {**self.lora_choices, key: tuple(rows)}
            if self.store is not None:
                self.store.write(key, format_rows(rows))

    # -- structure --------------------------------------------------------------------------

    def controlnet_choices(self) -> tuple[str, ...]:
        """The ControlNets that fit the chosen base (after "Default" in the combo)."""
        return fitting_controlnets(self.models.controlnets, self.models.base(self.model_name))

    def set_structure_layer(self, node_id: str) -> None:
        """Steer by layer `node_id` ("": no structure); a layer picked while the kind is
        none switches it to edges (canny), the kind that fits any layer."""
        self.structure_layer = node_id
        if node_id and self.option_value("control") in (None, "none"):
            self.set_option("control", "canny")

    def structure_options(self, mode: ModeInfo) -> dict[str, Any]:
        """`control`, `control_strength`, `controlnet` when a structure layer is chosen."""
        if not takes_structure(mode):
            return {}
        return structure_fields(
            self.option_value("control"),
            self.structure_layer,
            self.option_value("control_strength"),
            self.option_value("controlnet"),
            self.controlnet_choices(),
        )

    def read_structure(self, document: Document) -> WireImage:
        """The structure layer over the canvas frame, composited over white."""
        image = document.read_node(self.structure_layer)
        if image is None:
            raise UserError(
                "The structure layer is no longer in the document: pick another one (or None)."
            )
        return WireImage(over_white(image.data), image.width, image.height)

    def set_input_source(self, field: str, source: str) -> None:
        """Read input `field` from `source` (one of its `sources`) from now on."""
        self.input_sources = {**self.input_sources, field: source}

    def set_generated(self, field: str, generated: bool) -> None:
        """Generate optional input `field` instead of reading it (or read it again)."""
        others = tuple(name for name in self.generated_inputs if name != field)
        self.generated_inputs = (*others, field) if generated else others

    def layout_group_id(self, document: Document) -> str:
        """The layout group to read: the one picked, else the active layer if it is a group."""
        if self.layout_group and any(gid == self.layout_group for gid, _ in document.groups()):
            return self.layout_group
        active = document.active_group_id()
        if active is None:
            raise UserError(
                "Select the layout group in the Layers docker (or pick it in the docker): a "
                "group with one layer per object, named after it and painted where it goes."
            )
        return active
