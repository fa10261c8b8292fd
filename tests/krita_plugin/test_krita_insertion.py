"""How result layers go into a document: 16-bit pixels for 16/32-bit documents and the alpha
as an editable mask. Pure logic against numpy references (reference.py), the mask template
read back by psd-tools, and whole jobs on the real server (`acetate serve`, tiny models) into
the in-memory document of test_model.py; the Krita side runs in scenarios/insertion.py.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Mapping

import numpy as np
import pytest
import pytest_asyncio
from aiohttp_transport import AiohttpTransport
from insertion_checks import served
from psd_tools import PSDImage
from reference import rgba16_to_krita
from server_process import ServerProcess
from test_model import MODES, FakeDocument, FakeDocuments, make_model

from acetate_krita.choices import offered
from acetate_krita.client import AcetateClient, HttpResponse, ServerError
from acetate_krita.insertion import DOCUMENT_OPTIONS, Downloads, document_options
from acetate_krita.mask_template import mask_template_psd
from acetate_krita.model import Model
from acetate_krita.pixels import (
    LayerPixels,
    PixelFormat,
    from_rgba8,
    from_rgba16,
    rgba16_to_rgba8,
)
from acetate_krita.protocol import ModeInfo

#: Every 16-bit code once (0 and 65535 included), shuffled: 16384 RGBA pixels.
CODES = np.random.default_rng(7).permutation(65536).astype("<u2")


def rgba16(codes: np.ndarray) -> bytes:
    return np.ascontiguousarray(codes, dtype="<u2").tobytes()


# -- pixel conversions ---------------------------------------------------------------------


#: Krita depths and transfer curves a 16-bit layer is written to (8-bit documents fetch 8-bit
#: layers; U8 is here for the rounding).
FORMATS = [(depth, linear) for depth in ("U16", "F16", "F32") for linear in (False, True)]


@pytest.mark.parametrize(("depth", "linear"), [*FORMATS, ("U8", False)])
def test_16bit_pixels_convert_exactly_to_every_krita_depth(depth: str, linear: bool) -> None:
    data = rgba16(CODES)
    ours = from_rgba16(data, PixelFormat(depth, linear))
    assert ours == rgba16_to_krita(data, depth, linear)


def test_a_16bit_srgb_layer_keeps_its_codes_in_kritas_order() -> None:
    """U16 sRGB: Krita's B, G, R, A uint16 with the server's values unchanged."""
    pixel = np.array([1000, 2001, 65534, 4097], "<u2")
    ours = np.frombuffer(from_rgba16(rgba16(pixel), PixelFormat("U16")), "<u2")
    assert ours.tolist() == [65534, 2001, 1000, 4097]


def test_16bit_to_8bit_rounds_to_the_nearest_level() -> None:
    expected = np.rint(CODES.astype(np.float64) / 257).astype(np.uint8)
    assert rgba16_to_rgba8(rgba16(CODES)) == expected.tobytes()
    assert LayerPixels(rgba16(CODES), 16).rgba8() == expected.tobytes()


@pytest.mark.parametrize(
    "fmt", [PixelFormat(d, linear) for d in ("U8", "U16", "F32") for linear in (False, True)]
)
def test_8bit_layers_go_in_as_before(fmt: PixelFormat) -> None:
    data = bytes(np.random.default_rng(3).integers(0, 256, 4 * 500, dtype=np.uint8))
    assert LayerPixels(data).krita_bytes(fmt) == from_rgba8(data, fmt)
    # With the mask option an opaque layer (a background) goes in as it is, without a mask.
    opaque = bytearray(data)
    opaque[3::4] = b"\xff" * 500
    pixels = LayerPixels(bytes(opaque), alpha_mask=True)
    assert pixels.opaque and pixels.mask_bytes() is None
    assert pixels.krita_bytes(fmt) == from_rgba8(bytes(opaque), fmt)


@pytest.mark.parametrize("bits", [8, 16])
def test_the_alpha_goes_to_the_mask_and_the_colour_stays_under_alpha_zero(bits: int) -> None:
    dtype, full = ("<u2", 65535) if bits == 16 else ("u1", 255)
    rgba = np.random.default_rng(bits).integers(1, full, (300, 4)).astype(dtype)
    rgba[::3, 3] = 0  # transparent, colour kept as decoded
    rgba[1::3, 3] = full
    data = rgba.tobytes()
    pixels = LayerPixels(data, bits, alpha_mask=True)
    assert not pixels.opaque and pixels.has_mask
    layer = np.frombuffer(pixels.layer_data(), dtype).reshape(-1, 4)
    assert (layer[:, :3] == rgba[:, :3]).all() and (layer[:, 3] == full).all()
    alpha8 = np.rint(rgba[:, 3] / 257) if bits == 16 else rgba[:, 3]  # masks are 8-bit
    assert pixels.mask_bytes() == alpha8.astype(np.uint8).tobytes()
    # Without the option the layer goes in as downloaded, transparent, with no mask.
    plain = LayerPixels(data, bits)
    assert plain.layer_data() == data and plain.mask_bytes() is None


# -- what follows the document ---------------------------------------------------------------


def test_bit_depth_follows_the_document_and_has_no_control() -> None:
    with_depth = [mode for mode in MODES.modes if mode.option("bit_depth") is not None]
    assert with_depth, "the server declares bit_depth on its layer-producing modes"
    for mode in with_depth:
        assert document_options(mode, "U8") == {}  # 8-bit: the request as it always was
        for depth in ("U16", "F16", "F32"):
            assert document_options(mode, depth) == {"bit_depth": 16}
        assert all(option.name not in DOCUMENT_OPTIONS for option in offered(mode))
    assert document_options(ModeInfo("old", "Old"), "U16") == {}  # a server without it
    assert Downloads.of({"bit_depth": 16}, "F32", True) == Downloads(16, True)
    assert Downloads.of({"bit_depth": 16}, "U8", False).bits == 8  # rounded by the server
    assert Downloads.of({"bit_depth": 8}, "U16", False).bits == 8
    assert "alpha_mask" in Model.persisted()  # remembered in kritarc


def test_the_mask_template_is_a_one_pixel_psd_with_a_white_layer_mask() -> None:
    psd = PSDImage.open(io.BytesIO(mask_template_psd()))
    (layer,) = list(psd)
    assert layer.kind == "pixel" and (layer.width, layer.height) == (1, 1)
    assert layer.mask is not None and layer.mask.background_color == 255
    assert layer.mask.topil().getpixel((0, 0)) == 255


# -- whole jobs on the real server -----------------------------------------------------------


class RecordingTransport(AiohttpTransport):
    """The real aiohttp transport, keeping each POST body (to see what a request sent)."""

    def __init__(self) -> None:
        super().__init__()
        self.posted: list[bytes] = []

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float = 30.0,
    ) -> HttpResponse:
        if method == "POST" and body is not None:
            self.posted.append(body)
        return await super().request(method, url, headers, body, timeout)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[RecordingTransport]:
    transport = RecordingTransport()
    yield transport
    await transport.close()


def download(server: ServerProcess, job_id: str, file: str, fmt: str) -> bytes:
    """A layer's raw bytes as the server serves them (`rgba` or `rgba16`)."""
    return served(server.url, job_id, file, fmt).tobytes()


async def fg_job(
    server: ServerProcess, http: RecordingTransport, depth: str, alpha_mask: bool = False
) -> tuple[Model, FakeDocument]:
    document = FakeDocument(color_depth=depth)
    model = make_model(FakeDocuments(document), http)
    model.server_url = server.url
    assert await model.connect()
    model.mode, model.prompt, model.model_name = "fg", "smoke", "tiny-sdxl"
    model.random_seed, model.seed, model.alpha_mask = False, 11, alpha_mask
    for name, value in (("steps", 1), ("decode", "fast"), ("width", 64), ("height", 64)):
        model.set_option(name, value)
    record = await asyncio.wait_for(model.generate(), 120)
    assert model.error == "" and record is not None, model.error
    return model, document


def inserted(document: FakeDocument) -> LayerPixels:
    (node,) = document.nodes[-1].children
    assert node.pixels is not None
    return node.pixels


@pytest.mark.asyncio
async def test_a_16bit_document_receives_the_servers_16bit_pixels(
    acetate_server: ServerProcess, http: RecordingTransport
) -> None:
    model, document = await fg_job(acetate_server, http, "U16")
    (item,) = model.history
    record = item.record
    assert record.parameters["bit_depth"] == 16
    pixels = inserted(document)
    served = download(acetate_server, record.id, "foreground.png", "rgba16")
    assert pixels.bits == 16 and pixels.data == served
    codes = np.frombuffer(served, "<u2")
    assert (codes % 257 != 0).any(), "16-bit values that are not just 8-bit ones scaled"
    assert item.thumbnail is not None  # drawn from the 16-bit pixels
    # Inserted again into an 8-bit document: 8-bit pixels, the server's rounding.
    flat = FakeDocument()
    model.documents = FakeDocuments(flat)
    await model.insert_again(item)
    assert model.error == ""
    again = inserted(flat)
    assert again.bits == 8 and again.data == download(
        acetate_server, record.id, "foreground.png", "rgba"
    )
    assert again.data == rgba16_to_rgba8(served)
    model.close()


@pytest.mark.asyncio
async def test_an_8bit_document_sends_no_bit_depth_and_gets_8bit_pixels(
    acetate_server: ServerProcess, http: RecordingTransport
) -> None:
    model, document = await fg_job(acetate_server, http, "U8")
    record = model.history[0].record
    assert record.parameters["bit_depth"] == 8  # the server's default, filled in
    (request,) = http.posted
    assert b"bit_depth" not in request  # the request is what it was before the option
    pixels = inserted(document)
    assert pixels.bits == 8 and not pixels.alpha_mask
    assert pixels.data == download(acetate_server, record.id, "foreground.png", "rgba")
    # A 16-bit download of an 8-bit job is refused, and the plugin says so.
    client = AcetateClient(http, acetate_server.url)
    with pytest.raises(ServerError) as refused:
        await client.layer_pixels(record.id, record.layers[0], 16)
    assert refused.value.field == "format" and refused.value.status == 400
    model.close()


@pytest.mark.parametrize("depth", ["U8", "U16"])
@pytest.mark.asyncio
async def test_alpha_as_mask_keeps_the_decoded_colour_under_zero_alpha(
    acetate_server: ServerProcess, http: RecordingTransport, depth: str
) -> None:
    model, document = await fg_job(acetate_server, http, depth, alpha_mask=True)
    record = model.history[0].record
    pixels = inserted(document)
    bits = 16 if depth == "U16" else 8
    served = download(
        acetate_server, record.id, "foreground.png", "rgba16" if bits == 16 else "rgba"
    )
    assert pixels.alpha_mask and pixels.bits == bits and pixels.data == served
    rgba = np.frombuffer(served, "<u2" if bits == 16 else "u1").reshape(-1, 4)
    # The server keeps the decoder's colour where alpha is 0 (not zeroed), and so does the layer.
    clear = rgba[:, 3] == 0
    assert clear.any() and (rgba[clear, :3] != 0).any(), "no colour under alpha 0 to keep"
    layer = np.frombuffer(pixels.layer_data(), rgba.dtype).reshape(-1, 4)
    assert (layer[:, :3] == rgba[:, :3]).all() and (layer[:, 3] == np.iinfo(rgba.dtype).max).all()
    mask = np.frombuffer(pixels.mask_bytes() or b"", np.uint8)
    expected = np.rint(rgba[:, 3] / 257) if bits == 16 else rgba[:, 3]
    assert (mask == expected).all()
    model.close()
