"""utils.images: every odd or broken file a student's folder may hold, made here in tmp_path."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from utils.images import ImageLoadError, list_images, open_image, to_rgb


def _pixel(image: Image.Image, xy=(0, 0)) -> tuple:
    assert image.mode == "RGB"
    return image.getpixel(xy)


def test_plain_rgb_roundtrip(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (5, 4), (200, 10, 20)).save(path)
    image = open_image(path)
    assert image.size == (5, 4) and _pixel(image) == (200, 10, 20)


def test_grayscale_and_one_bit(tmp_path):
    Image.new("L", (3, 3), 77).save(tmp_path / "g.png")
    Image.new("1", (3, 3), 1).save(tmp_path / "b.png")
    assert _pixel(open_image(tmp_path / "g.png")) == (77, 77, 77)
    assert _pixel(open_image(tmp_path / "b.png")) == (255, 255, 255)


def test_rgba_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 255, 255))
    path = tmp_path / "alpha.png"
    rgba.save(path)
    image = open_image(path)
    assert _pixel(image, (0, 0)) == (255, 255, 255)  # fully transparent -> background
    assert _pixel(image, (1, 0)) == (0, 0, 255)  # opaque -> unchanged
    half = to_rgb(Image.new("RGBA", (1, 1), (0, 0, 0, 128)))
    assert abs(_pixel(half)[0] - 127) <= 1  # 50 % black on white is mid grey


def test_palette_with_transparency(tmp_path):
    pal = Image.new("P", (2, 1), 0)
    pal.putpalette([0, 255, 0] + [255, 0, 0] + [0] * 762)
    pal.putpixel((1, 0), 1)
    path = tmp_path / "pal.png"
    pal.save(path, transparency=0)
    image = open_image(path)
    assert _pixel(image, (0, 0)) == (255, 255, 255)  # index 0 is transparent
    assert _pixel(image, (1, 0)) == (255, 0, 0)
    path2 = tmp_path / "pal_opaque.gif"
    pal.save(path2)
    assert _pixel(open_image(path2), (0, 0)) == (0, 255, 0)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_scaled_to_8_bit(tmp_path, suffix):
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)  # (1, 3)
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    image = open_image(path)
    assert [p[0] for p in np.asarray(image)[0]] == [0, 100, 255]


def test_16_bit_big_endian_and_int32_mode():
    raw = np.array([[0, 257 * 100, 65535]], dtype=">u2")
    big = Image.frombytes("I;16B", (3, 1), raw.tobytes())
    assert np.asarray(to_rgb(big))[0, :, 0].tolist() == [0, 100, 255]
    int32 = Image.fromarray(np.array([[0, 25700, 65535]], dtype=np.int32), mode="I")
    assert np.asarray(to_rgb(int32))[0, :, 0].tolist() == [0, 100, 255]
    small = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32), mode="I")
    assert np.asarray(to_rgb(small))[0, :, 0].tolist() == [0, 100, 255]  # already 8-bit


def test_16_bit_pgm(tmp_path):
    path = tmp_path / "deep.pgm"
    Image.fromarray(np.array([[0, 257 * 40, 65535]], dtype=np.uint16)).save(path)
    assert np.asarray(open_image(path))[0, :, 0].tolist() == [0, 40, 255]


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path, quality=95)  # pure red ink
    r, g, b = _pixel(open_image(path), (4, 4))
    assert r > 200 and g < 60 and b < 60


def test_exif_orientation_applied(tmp_path):
    wide = Image.new("RGB", (40, 10), (0, 0, 0))
    wide.paste((255, 255, 255), (0, 0, 10, 10))  # white block on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    path = tmp_path / "phone.jpg"
    wide.save(path, exif=exif, quality=95)
    image = open_image(path)
    assert image.size == (10, 40)  # upright: tall
    assert _pixel(image, (5, 5))[0] > 200  # the white block is now at the top
    assert _pixel(image, (5, 35))[0] < 50


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 2
    r, g, b = _pixel(open_image(path))
    assert r > 200 and b < 50


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty") as info:
        open_image(path)
    assert info.value.path == str(path)


def test_truncated_jpeg(tmp_path):
    full = tmp_path / "full.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ImageLoadError, match="truncated"):
        open_image(cut)
    cut.write_bytes(full.read_bytes()[:300])  # cut inside the header
    with pytest.raises(ImageLoadError, match="truncated"):
        open_image(cut)


@pytest.mark.parametrize(
    ("content", "word"),
    [(b"hello, I am a text file\n", "text"), (b"<!DOCTYPE html><html>404</html>", "web page"),
     (b"\x00\x01\x02\x03garbage\xff\xfe", "does not recognise")],
)
def test_not_an_image(tmp_path, content, word):
    path = tmp_path / "fake.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=word):
        open_image(path)


def test_pixel_limit(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 50)).save(path)
    with pytest.raises(ImageLoadError, match="5,000 pixels"):
        open_image(path, max_pixels=4999)
    assert open_image(path, max_pixels=5000).size == (100, 50)
    # Pillow's own decompression-bomb error is reported the same way.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageLoadError, match="too large"):
        open_image(path, max_pixels=None)


def test_missing_and_folder(tmp_path):
    with pytest.raises(ImageLoadError, match="does not exist"):
        open_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="folder"):
        open_image(tmp_path)


def test_error_pickles():
    err = pickle.loads(pickle.dumps(ImageLoadError("a.jpg", "broken")))
    assert (err.path, err.reason) == ("a.jpg", "broken")


def test_draft_shrinks_large_jpeg(tmp_path):
    path = tmp_path / "large.jpg"
    Image.new("RGB", (800, 600), (10, 200, 30)).save(path)
    assert open_image(path, draft_size=100).size == (200, 150)  # 1/4 keeps both sides >= 100
    assert open_image(path).size == (800, 600)


def test_to_rgb_arrays():
    assert _pixel(to_rgb(np.full((2, 2), 9, np.uint8))) == (9, 9, 9)
    assert _pixel(to_rgb(np.ones((2, 2, 3), np.float32))) == (255, 255, 255)
    assert _pixel(to_rgb(np.zeros((3, 2, 2), np.float32))) == (0, 0, 0)  # (C, H, W)
    assert _pixel(to_rgb(np.full((2, 2, 3), 65535, np.uint16))) == (255, 255, 255)
    rgb = Image.new("RGB", (1, 1))
    assert to_rgb(rgb) is rgb
    with pytest.raises(TypeError):
        to_rgb("not an image")
    with pytest.raises(ValueError, match="shape"):
        to_rgb(np.zeros((2, 2, 7)))


def test_list_images(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".clip-index").mkdir()
    for name in ("b.JPG", "a.png", "sub/c.gif", ".hidden.png", ".clip-index/x.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["a.png", "b.JPG", "sub/c.gif"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.png", "b.JPG"]
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "missing")


# ---------------------------------------------------------------- utils.viz: pictures and grids


def test_to_pil_rounds_and_image_grid_lays_out_in_reading_order():
    import torch

    from utils.viz import image_grid, to_pil

    assert to_pil(torch.full((3, 2, 2), 0.5)).getpixel((0, 0)) == (128, 128, 128)  # round(127.5), not floor
    assert [im.getpixel((0, 0)) for im in to_pil(torch.tensor([0.0, 1.0]).view(2, 1, 1, 1).expand(2, 3, 1, 1))] \
        == [(0, 0, 0), (255, 255, 255)]
    colours = torch.linspace(0, 0.8, 5)
    images = colours.view(5, 1, 1, 1).expand(5, 3, 4, 4)  # five flat grey 4x4 pictures
    grid = image_grid(images, gap=2, ncols=3)
    assert grid.size == (3 * 4 + 2 * 2, 2 * 4 + 2)  # (width, height): gaps between, none around
    for i, value in enumerate(colours.tolist()):
        left, top = (i % 3) * 6, (i // 3) * 6
        assert grid.getpixel((left + 1, top + 1))[0] == round(255 * value), f"picture {i} is not in its cell"
    assert grid.getpixel((4, 0)) == (255, 255, 255) and grid.getpixel((13, 7)) == (255, 255, 255)  # gap, empty cell


def test_show_images_titles_every_picture(monkeypatch):
    import matplotlib
    import torch

    from utils.viz import show_images

    matplotlib.use("Agg")
    pictures = [torch.rand(3, 8, 8), Image.new("RGB", (8, 8), (255, 0, 0)), np.zeros((8, 8, 3), np.uint8)]
    fig = show_images(pictures, ["a", "b", "c"], "three", rows=2, show=False)
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == ["a", "b", "c"] and fig._suptitle.get_text() == "three"
    assert len(fig.axes) == 4 and shown[1].images[0].get_array()[0, 0].tolist() == [255, 0, 0]


# ---------------------------------------------------------------- utils.io: checkpoints and atomic writes


def test_checkpoint_round_trip_keeps_values_in_float16(tmp_path):
    import torch

    from utils.io import load_checkpoint, save_checkpoint

    model = torch.nn.Linear(3, 2)
    model.register_buffer("counts", torch.tensor([1, 2, 3]))  # integers are stored as they are
    config = save_checkpoint(model, tmp_path / "m.safetensors", {"width": 3})
    state, raw, path = load_checkpoint(tmp_path / "m.safetensors", tmp_path / "x", "model", "retrain it")
    assert config == tmp_path / "m.json" and raw == {"width": 3} and path == tmp_path / "m.safetensors"
    assert state["weight"].dtype == torch.float32 and state["counts"].tolist() == [1, 2, 3]
    assert torch.equal(state["weight"], model.weight.detach().half().float())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]  # no temporary file left
    with pytest.raises(FileNotFoundError, match="The model .* is missing. Rebuild it: retrain it"):
        load_checkpoint(None, tmp_path / "gone.safetensors", "model", "retrain it")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from utils.io import atomic_path, sha256_of, slug, write_atomic

    path = write_atomic(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    import hashlib

    assert sha256_of(path) == hashlib.sha256(b"old").hexdigest()
    assert slug("A red Star, on the LEFT!") == "a-red-star-on-the-left" and slug("???") == "image"


def test_a_malformed_exif_block_costs_a_warning_not_the_picture_and_bugs_still_raise(tmp_path, monkeypatch):
    import struct

    import pytest
    from PIL import Image, ImageOps

    from utils import images

    path = tmp_path / "photo.png"
    Image.new("RGB", (6, 4), "red").save(path)
    for broken in (struct.error("unpack requires a buffer"), KeyError(0x0112), ValueError("bad")):
        monkeypatch.setattr(ImageOps, "exif_transpose", lambda image, broken=broken: (_ for _ in ()).throw(broken))
        with pytest.warns(UserWarning, match="EXIF orientation ignored"):
            assert images.open_image(path).size == (6, 4)
    monkeypatch.setattr(ImageOps, "exif_transpose", lambda image: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        images.open_image(path)
