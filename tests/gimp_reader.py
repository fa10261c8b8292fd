"""Reading a PSD with GIMP 2.10 (script-fu batch): the whole layer tree in one launch.

GIMP costs seconds per launch, so one call lists every item and saves each pixel layer.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

# Walks the layer tree top → bottom; writes one TSV row per item and each pixel layer as
# <tattoo>.png (svtrans 1: colour under transparent pixels kept). Definitions and the call
# must be in a single -b expression.
GIMP_SCRIPT = r"""
(define (acetate-dump item port dir prefix)
  (let* ((name (car (gimp-item-get-name item)))
         (offsets (gimp-drawable-offsets item))
         (tattoo (car (gimp-item-get-tattoo item)))
         (group (= 1 (car (gimp-item-is-group item)))))
    (for-each (lambda (value) (display value port) (display "\t" port))
              (list (string-append prefix name) (if group "group" "layer")
                    (car offsets) (cadr offsets)
                    (car (gimp-drawable-width item)) (car (gimp-drawable-height item))
                    (car (gimp-item-get-visible item))))
    (display tattoo port) (newline port)
    (if group
        (acetate-walk (vector->list (cadr (gimp-item-get-children item))) port dir
                      (string-append prefix name "/"))
        (let ((file (string-append dir "/" (number->string tattoo) ".png")))
          (file-png-save2 RUN-NONINTERACTIVE (car (gimp-item-get-image item)) item
                          file file 0 1 0 0 0 0 0 0 1)))))
(define (acetate-walk items port dir prefix)
  (for-each (lambda (item) (acetate-dump item port dir prefix)) items))
(define (acetate-list psd dir)
  (let* ((image (car (gimp-file-load RUN-NONINTERACTIVE psd psd)))
         (port (open-output-file (string-append dir "/layers.tsv"))))
    (display (car (gimp-image-width image)) port) (display "\t" port)
    (display (car (gimp-image-height image)) port) (newline port)
    (acetate-walk (vector->list (cadr (gimp-image-get-layers image))) port dir "")
    (close-output-port port)))
"""


@dataclass(frozen=True)
class GimpItem:
    """One layer or group as GIMP reads it (`path` is "group/name" inside a group)."""

    path: str
    is_group: bool
    left: int
    top: int
    width: int
    height: int
    visible: bool
    tattoo: int

    def pixels(self, folder: Path) -> np.ndarray:
        """The layer's straight RGBA pixels as GIMP exported them: uint8, or uint16 from a
        16-bit document (GIMP exports at the image's precision; Pillow would narrow it)."""
        path = folder / f"{self.tattoo}.png"
        if path.read_bytes()[24] == 16:  # IHDR bit depth
            bgra = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            code = cv2.COLOR_BGRA2RGBA if bgra.shape[2] == 4 else cv2.COLOR_BGR2RGBA
            return cv2.cvtColor(bgra, code)
        with Image.open(path) as image:
            return np.asarray(image.convert("RGBA"))


def read_with_gimp(psd: Path, folder: Path) -> tuple[tuple[int, int], list[GimpItem]]:
    """(width, height) and every item top → bottom; skips the test when GIMP is missing."""
    gimp = shutil.which("gimp")
    if gimp is None:
        pytest.skip("gimp is not installed (CI installs it)")
    # Script-fu cannot create folders, and a failed open leaves GIMP's batch mode waiting.
    folder.mkdir(parents=True, exist_ok=True)
    call = f'(begin {GIMP_SCRIPT} (acetate-list "{psd}" "{folder}") (gimp-quit 0))'
    subprocess.run(
        [gimp, "-i", "-d", "-f", "--batch-interpreter=plug-in-script-fu-eval", "-b", call],
        check=True,
        capture_output=True,
        timeout=180,
    )
    size, *rows = (folder / "layers.tsv").read_text("utf-8").splitlines()
    width, height = (int(value) for value in size.split("\t"))
    items = []
    for row in rows:
        path, kind, left, top, item_width, item_height, visible, tattoo = row.split("\t")
        items.append(
            GimpItem(
                path,
                kind == "group",
                int(left),
                int(top),
                int(item_width),
                int(item_height),
                visible == "1",
                int(tattoo),
            )
        )
    return (width, height), items
