"""The user's own frames: a folder of images or a video file, read as videos of RGB frames.

``discover(path)`` turns what the user points at into named videos:

- a video file (``.mp4``, ``.avi``, ``.mov``, ...): one video, named after the file (without extension);
- a folder holding images (png, jpg, ...): one video, named after the folder;
- a folder holding subfolders of images and/or video files: one video per subfolder and per video file,
  named after it, in name order.

Images are sorted by name, numbers compared as numbers (``f2.png`` before ``f10.png``). Hidden entries are
skipped, and so are files that are neither images nor videos (a ``README``, a label file).

``VideoSource.frames(size, resize)`` decodes one video lazily, frame by frame, and yields each frame resized
to the model's input size as float32 RGB in [0, 1], channels first. Normalisation for the model is applied
later (the frame difference and the input descriptor are measured on these [0, 1] pixels, as for rendered
frames). Every read or decode failure is an :class:`EngramError` naming the file (and the frame).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from engram.errors import EngramError, FormatError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp")
RESIZE_MODES = ("stretch", "crop")


def natural_key(name: str) -> tuple:
    """``f2`` before ``f10``: digit runs compare as numbers (parts alternate str, int, str, ...)."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)) + (name,)


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS


def _is_video(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS


def _images_in(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted((p for p in folder.iterdir() if _visible(p) and _is_image(p)), key=lambda p: natural_key(p.name)))


@dataclass(frozen=True)
class VideoSource:
    """One video: a folder of image frames, or a video file."""

    name: str
    path: Path
    kind: str  # "images" or "video"
    images: tuple[Path, ...] = ()

    def count(self) -> int | None:
        """Number of frames if known without decoding (image folders), else None."""
        return len(self.images) if self.kind == "images" else None

    def fps(self) -> float | None:
        """A video file's average frame rate (None for image folders, or when the file does not say)."""
        if self.kind != "video":
            return None
        av = _av()
        with _open_video(self.path, av) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            return float(rate) if rate else None

    def frames(self, size: tuple[int, int], resize: str = "stretch",
               wanted: np.ndarray | None = None) -> Iterator[tuple[int, float | None, np.ndarray]]:
        """``(frame index, time in s or None, (3, H, W) float32 RGB in [0, 1])`` per frame, in order.

        ``wanted`` (ascending frame indices) keeps only those frames: unwanted images are not even read, a
        video is decoded up to its last wanted frame. Indices past the end are the caller's to check.
        """
        if self.kind == "images":
            indices = range(len(self.images)) if wanted is None else (int(i) for i in wanted if i < len(self.images))
            for i in indices:
                yield i, None, to_array(load_image(self.images[i]), size, resize)
            return
        if wanted is not None and len(wanted) == 0:
            return
        keep = None if wanted is None else set(int(i) for i in wanted)
        last = None if wanted is None else int(wanted[-1])
        for i, t, frame in _video_frames(self.path):
            if keep is None or i in keep:
                yield i, t, to_array(frame.to_image(), size, resize)
            if last is not None and i >= last:
                return

    def describe(self, root: Path) -> str:
        if self.path == root:
            return self.path.name
        try:
            return str(self.path.relative_to(root)) or "."
        except ValueError:
            return str(self.path)


def discover(path: str | Path) -> list[VideoSource]:
    """The videos at ``path`` (see the module docstring); raises EngramError naming the path."""
    path = Path(path)
    if not path.exists():
        raise EngramError("not found", path=path, field="frames")
    if path.is_file():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            raise EngramError("is a single image; give the folder that holds the frames", path=path, field="frames")
        return [VideoSource(path.stem, path, "video")]
    try:
        entries = sorted((p for p in path.iterdir() if _visible(p)), key=lambda p: natural_key(p.name))
    except OSError as exc:
        raise EngramError(f"cannot list the folder ({exc.strerror or exc})", path=path, field="frames") from None
    images = [p for p in entries if _is_image(p)]
    folders = [p for p in entries if p.is_dir()]
    videos = [p for p in entries if _is_video(p)]
    if images:
        if folders or videos:
            other = (folders + videos)[0]
            raise EngramError(f"mixes image files with subfolders or video files ({other.name!r}): put each video's "
                              "frames in its own subfolder", path=path, field="frames")
        return [VideoSource(path.name or path.resolve().name, path, "images", tuple(images))]
    sources: list[VideoSource] = []
    for p in folders:
        imgs = _images_in(p)
        if not imgs:
            raise EngramError(f"holds no images ({', '.join(IMAGE_EXTENSIONS)})", path=p, field="frames")
        sources.append(VideoSource(p.name, p, "images", imgs))
    sources += [VideoSource(p.stem, p, "video") for p in videos]
    if not sources:
        raise EngramError("holds no images, image subfolders or video files", path=path, field="frames")
    names = [s.name for s in sources]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise EngramError(f"two videos would be called {dup!r} (a subfolder and a video file?)", path=path, field="frames")
    return sorted(sources, key=lambda s: natural_key(s.name))


# -- images -------------------------------------------------------------------------------------------------


def load_image(path: Path):
    """Decode one image fully (EXIF orientation applied) as an RGB PIL image."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return im.convert("RGB")  # forces the full decode: a truncated file fails here, not later
    except FileNotFoundError:
        raise EngramError("image not found", path=path) from None
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise FormatError(f"cannot decode image ({_short(exc)})", path=path) from None


def to_array(im, size: tuple[int, int], resize: str = "stretch") -> np.ndarray:
    """PIL RGB image -> (3, H, W) float32 in [0, 1] at ``size = (H, W)``.

    ``stretch`` resizes the whole frame to H x W; ``crop`` first cuts the largest centred region with the
    model's aspect ratio. Bilinear, antialiased when shrinking (Pillow's resampling).
    """
    from PIL import Image

    h, w = size
    if resize == "crop":
        W, H = im.size
        if W * h > H * w:  # too wide
            cw = max(1, round(H * w / h))
            left = (W - cw) // 2
            im = im.crop((left, 0, left + cw, H))
        elif W * h < H * w:  # too tall
            ch = max(1, round(W * h / w))
            top = (H - ch) // 2
            im = im.crop((0, top, W, top + ch))
    elif resize != "stretch":
        raise ValueError(f"unknown resize mode {resize!r}")
    if im.size != (w, h):
        im = im.resize((w, h), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0


# -- video files --------------------------------------------------------------------------------------------


def _av():
    try:
        import av
    except ImportError:  # pragma: no cover - a declared dependency
        raise EngramError("reading video files needs PyAV: pip install av") from None
    return av


def _open_video(path: Path, av):
    if not path.exists():
        raise EngramError("video not found", path=path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise FormatError(f"not a readable video file ({_short(exc)})", path=path) from None
    if not container.streams.video:
        container.close()
        raise FormatError("has no video stream", path=path)
    return container


def _video_frames(path: Path) -> Iterator[tuple[int, float | None, "object"]]:
    """``(index, time in s or None, av.VideoFrame)`` for every decoded frame; raises if there are none."""
    av = _av()
    with _open_video(path, av) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        i = 0
        last_t = None
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                raise FormatError(f"cannot decode frame {i} ({_short(exc)})", path=path) from None
            t = frame.time
            if t is not None:
                if last_t is not None and t < last_t:
                    raise FormatError(f"frame {i} has time {t:.6f} s, before the previous frame's {last_t:.6f} s",
                                      path=path, field="time")
                last_t = t
            yield i, (float(t) if t is not None else None), frame
            i += 1
    if i == 0:
        raise FormatError("the video holds no frames", path=path)


def _short(exc: BaseException, limit: int = 140) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
