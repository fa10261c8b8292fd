"""What a mode declaration is made of: `ModeSpec` and its parts (inputs, list inputs, layers,
stages, per-family support). The declarations themselves are in `acetate.modes.builtin`."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from dataclasses import field as default_field
from typing import Any, Literal

from acetate.modes.options import FAMILY_LABELS, OPTIONS, Family, Option, Scheduler

ImageKind = Literal["rgba", "mask"]
#: Where an editor reads an image input from: the visible composite of the document, one
#: layer (the active one unless the user picks another), or the selection as a mask.
ImageSource = Literal["canvas", "layer", "selection"]


@dataclass(frozen=True)
class ImageInput:
    """An image or mask request field."""

    field: str
    label: str
    help: str
    kind: ImageKind = "rgba"
    source: ImageSource = "layer"
    required: bool = True
    #: The result frame is this image's pixel frame (editor modes).
    frame: bool = False
    #: A mask's reference image: same size, or placed by `selection_bounds`.
    relative_to: str | None = None
    #: Only used when these options have one of these values (control_image with control).
    when: Mapping[str, tuple[str, ...]] = default_field(default_factory=dict)
    #: The result takes the place of what this image is read from (decompose): editors put
    #: the result's groups directly above that layer and hide it (never delete it); undoing
    #: the result shows it again. Read from the canvas, what it replaces is every visible
    #: top-level layer.
    replaced: bool = False
    #: Sources the user may pick instead of `source` (decompose: the whole canvas instead of
    #: the active layer); editors offer the choice, `source` first.
    other_sources: tuple[ImageSource, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "field": self.field,
            "label": self.label,
            "help": self.help,
            "kind": self.kind,
            "source": self.source,
            "required": self.required,
            "frame": self.frame,
        }
        if self.relative_to:
            data["relative_to"] = self.relative_to
        if self.when:
            data["when"] = {key: list(values) for key, values in self.when.items()}
        if self.replaced:
            data["replaced"] = True
        if self.other_sources:
            data["other_sources"] = list(self.other_sources)
        return data


@dataclass(frozen=True)
class ListInput:
    """A list-valued request field whose items carry their own fields (and images)."""

    field: str
    label: str
    help: str
    item_options: tuple[Option, ...]
    min_items: int = 1
    max_items: int = 16
    item_images: tuple[ImageInput, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "label": self.label,
            "help": self.help,
            "min_items": self.min_items,
            "max_items": self.max_items,
            "item_options": [option.to_json() for option in self.item_options],
            "item_images": [image.to_json() for image in self.item_images],
        }


@dataclass(frozen=True)
class LayerOut:
    """One layer (or a numbered run of layers) a mode returns per result set."""

    name: str
    label: str
    #: A pattern `object_{i}` is repeated for i = 0 … count-1, the count taken from this request
    #: field (a list's length, or an int option's value).
    count_from: str | None = None
    visible: bool = True
    #: Written with an alpha channel even when fully opaque (transparent layers).
    keeps_alpha: bool = False
    #: Returned only when this image input is not sent (a background generated when none is
    #: given).
    only_without: str | None = None
    #: Counted layers: the item field of the `count_from` list whose text names each layer in
    #: records and editors (`title`); the file keeps the pattern name (`object_0.png`).
    title_from: str | None = None
    #: Counted layers: the first `i` (decompose numbers its layers from 1, scene from 0).
    first: int = 0

    def names(self, count: int) -> list[str]:
        if self.count_from is None:
            return [self.name]
        return [self.name.format(i=i) for i in range(self.first, self.first + count)]

    def number(self, name: str) -> int | None:
        """`i` of a layer named by this pattern (0 for a fixed name); None if it is not one."""
        if self.count_from is None:
            return 0 if name == self.name else None
        prefix, _, suffix = self.name.partition("{i}")
        if len(name) <= len(prefix) + len(suffix):
            return None
        if not (name.startswith(prefix) and name.endswith(suffix)):
            return None
        middle = name[len(prefix) : len(name) - len(suffix)]
        return int(middle) if middle.isdigit() else None

    def matches(self, name: str) -> bool:
        return self.number(name) is not None

    def titles(self, items: list[Mapping[str, Any]]) -> list[str]:
        """Display names of a counted layer's items: the `title_from` text, first 60
        characters, made unique with " (2)", " (3)"; the label and number when empty."""
        titles: list[str] = []
        for index, item in enumerate(items):
            text = str(item.get(self.title_from or "") or "").strip()[:TITLE_LENGTH].strip()
            base = text or f"{self.label} {index + 1}"
            title, copy = base, 1
            while title in titles:
                copy += 1
                title = f"{base} ({copy})"
            titles.append(title)
        return titles

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "visible": self.visible,
            "keeps_alpha": self.keeps_alpha,
        }
        if self.count_from:
            data["count_from"] = self.count_from
        if self.only_without:
            data["only_without"] = self.only_without
        if self.title_from:
            data["title_from"] = self.title_from
        if self.first:
            data["first"] = self.first
        return data


#: Layer titles taken from text (`LayerOut.title_from`) keep this many characters.
TITLE_LENGTH = 60


@dataclass(frozen=True)
class Stage:
    """One denoising run of a mode on a family."""

    name: str
    label: str
    #: This stage's default scheduler; None: the family's.
    scheduler: Scheduler | None = None
    #: Default fraction of the steps run with the layer model.
    stop_at: float = 1.0
    #: Whether the request's `stop_at` applies to this stage.
    takes_stop_at: bool = True
    #: Run once per item of this list input (progress counts every run).
    per_item: str | None = None
    #: Run only when this image input is not sent.
    only_without: str | None = None

    def runs(self, counts: Mapping[str, int], images: Collection[str]) -> int:
        """How many times this stage runs for a request with these list lengths and images."""
        if self.only_without is not None and self.only_without in images:
            return 0
        return counts.get(self.per_item, 0) if self.per_item is not None else 1

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "scheduler": self.scheduler,
            "stop_at": self.stop_at,
            "takes_stop_at": self.takes_stop_at,
        }
        if self.per_item:
            data["per_item"] = self.per_item
        if self.only_without:
            data["only_without"] = self.only_without
        return data


@dataclass(frozen=True)
class FamilySupport:
    """How a mode runs on one family: the official files per role, stages, default overrides."""

    #: role → official kinds (file stems) that can fill it, preferred first.
    files: Mapping[str, tuple[str, ...]]
    stages: tuple[Stage, ...]
    defaults: Mapping[str, Any] = default_field(default_factory=dict)


@dataclass(frozen=True)
class ModeSpec:
    """Everything about one mode; see the module docstring."""

    name: str
    label: str
    help: str
    #: `module:function` of the pipeline (imported by the engine only).
    pipeline: str
    layers: tuple[LayerOut, ...]
    options: tuple[str, ...]
    families: Mapping[Family, FamilySupport]
    inputs: tuple[ImageInput, ...] = ()
    lists: tuple[ListInput, ...] = ()
    prompt_required: bool = True
    #: Families this mode can never run on, and why.
    unsupported: Mapping[Family, str] = default_field(default_factory=dict)
    #: Per-mode default overrides for options (family-independent).
    defaults: Mapping[str, Any] = default_field(default_factory=dict)
    #: The result frame is the frame image multiplied by this option (upscale).
    frame_scale: str | None = None
    #: A request setting an option this mode does not read is refused (naming it) instead of
    #: the option being ignored.
    strict_options: bool = False

    # -- derived ----------------------------------------------------------------------------

    @property
    def frame_image(self) -> str | None:
        return next((image.field for image in self.inputs if image.frame), None)

    @property
    def is_editor_mode(self) -> bool:
        """Modes with an image input: layers come back in that input's pixel frame."""
        return self.frame_image is not None

    @property
    def required_images(self) -> tuple[str, ...]:
        return tuple(image.field for image in self.inputs if image.required)

    @property
    def allowed_images(self) -> tuple[str, ...]:
        return tuple(image.field for image in self.inputs)

    def option(self, name: str) -> Option:
        return OPTIONS[name]

    def default(self, name: str, family: Family | None = None) -> Any:
        """The default of option `name` for this mode on `family`."""
        if family is not None and family in self.families:
            overrides = self.families[family].defaults
            if name in overrides:
                return overrides[name]
        if name in self.defaults:
            return self.defaults[name]
        return OPTIONS[name].default_for(family)

    def stages(self, family: Family) -> tuple[Stage, ...]:
        return self.families[family].stages

    def denoise_runs(
        self, family: Family, counts: Mapping[str, int], images: Collection[str], batch: int
    ) -> int:
        """Denoising runs of one request (what progress counts, times the steps). A mode with a
        per-item stage runs its result sets one after another, each repeating every stage;
        other modes denoise all result sets together, once per stage."""
        stages = self.stages(family)
        runs = sum(stage.runs(counts, images) for stage in stages)
        per_result_set = any(stage.per_item is not None for stage in stages)
        return runs * batch if per_result_set else runs

    def layer_spec(self, name: str) -> LayerOut | None:
        return next((layer for layer in self.layers if layer.matches(name)), None)

    def stack_position(self, name: str) -> tuple[int, int]:
        """Where a layer stacks in its result set, bottom first: its declaration's index, then
        its number within a counted pattern; undeclared names go on top."""
        for index, layer in enumerate(self.layers):
            number = layer.number(name)
            if number is not None:
                return index, number
        return len(self.layers), 0

    def layer_names(
        self, counts: Mapping[str, int], images: Collection[str] | None = None
    ) -> list[str]:
        """Layer names per result set, bottom → top, for the given `count_from` values (and,
        when given, the image inputs sent: `only_without` layers drop out)."""
        names: list[str] = []
        for layer in self.layers:
            if images is not None and layer.only_without in images:
                continue
            names += layer.names(counts.get(layer.count_from or "", 0))
        return names

    def to_json(self) -> dict[str, Any]:
        """The `GET /api/modes` entry of this mode."""
        options = []
        for name in self.options:
            data = OPTIONS[name].to_json()
            data["default"] = self.default(name)
            family_defaults = {
                family: self.default(name, family)
                for family in self.families
                if self.default(name, family) != data["default"]
            }
            if family_defaults:
                data["family_defaults"] = family_defaults
            else:
                data.pop("family_defaults", None)
            options.append(data)
        families = [
            {
                "family": family,
                "label": FAMILY_LABELS.get(family, family),
                "supported": True,
                "stages": [stage.to_json() for stage in support.stages],
                # part → official kinds that fill it: editors offer the listed files of
                # these kinds (official or trained, `/api/models`) in a picker per part
                "files": {role: list(kinds) for role, kinds in support.files.items()},
            }
            for family, support in self.families.items()
        ]
        families += [
            {
                "family": family,
                "label": FAMILY_LABELS.get(family, family),
                "supported": False,
                "reason": reason,
            }
            for family, reason in self.unsupported.items()
        ]
        return {
            "name": self.name,
            "label": self.label,
            "help": self.help,
            "prompt_required": self.prompt_required,
            "inputs": [image.to_json() for image in self.inputs],
            "lists": [item.to_json() for item in self.lists],
            "frame": self.frame_image,
            "frame_scale": self.frame_scale,
            "strict_options": self.strict_options,
            "layers": [layer.to_json() for layer in self.layers],
            "options": options,
            "families": families,
        }
