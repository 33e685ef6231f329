"""Opening any image file as an upright RGB picture, or saying clearly why we cannot: grayscale,
transparent, palette, 16-bit, CMYK and sideways (EXIF) images become RGB (`open_image(path)`, or
`to_rgb(pil_image_or_array)` in memory); broken files (empty, cut short, a web page saved as
`.jpg`) raise `ImageLoadError(path, reason)`. `list_images(folder)`: sorted, hidden ones skipped."""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import CourseError

DEFAULT_MAX_PIXELS = 64_000_000  # more than any phone photo; more is a "decompression bomb"
DEFAULT_MAX_BYTES = 256 * 1024 * 1024  # a 64-Mpixel uncompressed RGB TIFF is 192 MB
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp",
                            ".ppm", ".pgm", ".pbm"})
_TRUNCATED = "the file is cut short (truncated): the copy or download did not finish. "
BACKGROUND = (255, 255, 255)  # transparent pixels are shown on white, as an image viewer does
# What Pillow raises on a malformed EXIF block (a bug of ours, e.g. a RuntimeError, still raises).
EXIF_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, SyntaxError, struct.error,
               ZeroDivisionError)


class ImageLoadError(CourseError):
    """An image file that cannot be used: `path`, and a `reason` that says what to do."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable, so worker processes can send it back
        return (type(self), (self.path, self.reason))


def open_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               draft_size: int | None = None,
               max_bytes: int | None = DEFAULT_MAX_BYTES) -> Image.Image:
    """Read an image file as an upright RGB `PIL.Image`, fully loaded (the file is closed).
    Refuses more than `max_pixels` pixels or `max_bytes` bytes (None: no limit of ours);
    draft_size lets the JPEG decoder shrink by 1/2, 1/4 or 1/8, keeping both sides >= it.
    Raises ImageLoadError for missing, empty, non-image, truncated, corrupt or too large files."""
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(path, "the file does not exist.")
    if path.is_dir():
        raise ImageLoadError(path, "this is a folder, not an image file.")
    size = path.stat().st_size
    if size == 0:
        raise ImageLoadError(path, "the file is empty (0 bytes): it was never written or the "
                                   "copy/download failed. Copy it again.")
    if max_bytes is not None and size > max_bytes:
        raise ImageLoadError(path, f"the file is {size / 2**20:,.0f} MiB, over the limit of "
                                   f"{max_bytes / 2**20:,.0f} MiB for one image; it was not read. "
                                   "Shrink or convert it first (or pass a larger max_bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we check below
            image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageLoadError(path, _not_an_image_reason(path)) from None
    except Image.DecompressionBombError as err:
        raise ImageLoadError(path, f"the image is too large to open safely ({err}). "
                                   "Shrink it first.") from None
    except ValueError as err:  # e.g. a PNG text chunk over PngImagePlugin.MAX_TEXT_CHUNK
        raise ImageLoadError(path, f"the file's metadata is too large to read safely ({err}); "
                                   "re-save the image without its metadata.") from None
    except OSError as err:
        truncated = "truncated" in str(err).lower()
        raise ImageLoadError(path, f"{_TRUNCATED}Pillow says: {err}. Copy the file again."
                             if truncated else f"the file cannot be read ({err}).") from None

    with image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageLoadError(path, f"the image is {width} x {height} = {width * height:,} "
                                 f"pixels, over the limit of {max_pixels:,} (a 'decompression "
                                 "bomb' guard). Shrink it first, or pass a larger max_pixels if "
                                 "you trust the file.")
        if draft_size and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        try:  # an animated image keeps its frame 0
            image.load()
        except (OSError, SyntaxError, ValueError) as err:
            hint = _TRUNCATED if "truncated" in str(err).lower() else "the image data is corrupt. "
            if ImageFile.LOAD_TRUNCATED_IMAGES:
                hint += "(ImageFile.LOAD_TRUNCATED_IMAGES is on.) "
            raise ImageLoadError(path, hint + f"Pillow says: {err}. Copy the file again.") from None
        try:  # phones store photos sideways plus an EXIF 'rotate' flag (Orientation)
            image = ImageOps.exif_transpose(image)
        except EXIF_ERRORS as err:  # a malformed EXIF block must not cost us the picture
            warnings.warn(f"{path}: EXIF orientation ignored, it is unreadable ({err}).",
                          stacklevel=2)
        rgb = to_rgb(image)
        return rgb.copy() if rgb is image else rgb


def _not_an_image_reason(path: Path) -> str:
    with open(path, "rb") as f:  # the first bytes only: the file may be huge
        head = f.read(256)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        if "<html" in text.lower() or "<!doctype" in text.lower():
            what = "a web page (HTML) saved under an image name, not an image"
        else:
            what = "text, not an image"
        start = text.strip().splitlines()[0][:40] if text.strip() else ""
        return f"the file holds {what} (it starts with {start!r}). Replace it with the real image."
    return (f"Pillow does not recognise this as an image (first bytes {head[:8]!r}); it is "
            f"corrupt or in a format Pillow cannot read. Convert it to PNG or JPEG.")


def to_rgb(image, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """A PIL image or numpy array -> a PIL image in mode "RGB" (an RGB image is returned as is).
    Transparency is composited on `background`; 16-bit: v8 = round(v16 / 257); "I": 8-bit if it
    fits, else 16-bit; floats: [0, 1] -> [0, 255]; other modes: Pillow's own conversion."""
    if isinstance(image, np.ndarray):
        image = _array_to_pil(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"to_rgb needs a PIL image or a numpy array, got {type(image).__name__}.")
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.float64)  # (H, W)
        if mode == "I" and values.max(initial=0) <= 255 and values.min(initial=0) >= 0:
            scaled = values
        elif mode == "I" and (values.max(initial=0) > 65535 or values.min(initial=0) < 0):
            lo, hi = values.min(), values.max()  # not 16-bit data: stretch its range to 0..255
            scaled = (values - lo) * (255.0 / max(hi - lo, 1e-12))
        else:
            scaled = values / 257.0
        gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "F":
        return _array_to_pil(np.asarray(image)).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
            mode == "P" and ("transparency" in image.info or image.palette.mode == "RGBA")):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def _array_to_pil(array: np.ndarray) -> Image.Image:
    """uint8 (H, W) / (H, W, 3|4), uint16, or float (values in [0, 1] or [0, 255]) -> PIL."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # (C, H, W) -> (H, W, C)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"Cannot read an array of shape {array.shape} as an image; expected "
                         "(H, W), (H, W, 3) or (H, W, 4).")
    if array.dtype == np.uint16:
        array = np.rint(array / 257.0).astype(np.uint8)
    elif array.dtype.kind == "f":
        top = 1.0 if np.nanmax(array, initial=0) <= 1.0 else 255.0
        array = np.clip(np.rint(np.nan_to_num(array) * (255.0 / top)), 0, 255).astype(np.uint8)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return Image.fromarray(array)


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files in `folder` by suffix, sorted, hidden ones ('.name') skipped; not opened (a
    broken file is listed, and open_image says what is wrong with it)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder. Pass the folder that holds your "
                                "images.")
    if recursive:
        walker = os.walk(folder)
    else:  # this folder only (a folder we may not read raises PermissionError)
        walker = [(str(folder), [], [p.name for p in folder.iterdir() if p.is_file()])]
    found = []
    for root, dirs, files in walker:
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # hidden folders are skipped
        found += [Path(root) / name for name in files
                  if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)
