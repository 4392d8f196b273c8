"""Frames sampled from a video at a fixed rate, decoded with PyAV (an optional dependency: `pip install av`)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from tqdm import tqdm


def import_av():  # -> the av module
    """PyAV, or a ValueError that says how to get it (it is an optional dependency)."""
    try:
        import av
    except ImportError as err:
        raise ValueError(
            "reading a video needs PyAV, which is not installed: run `pip install av` (or `pip install "
            "'vggt-npu[video]'`), or extract the frames yourself and pass their folder"
        ) from err
    return av


def extract_frames(path: Path, fps: float, out_dir: Path, progress: bool = True) -> list[Path]:
    """Decode `path`, keep one frame every 1 / `fps` seconds (the first frame always), write them to `out_dir`.

    Frames are written as `frame_000001.png`, ... in time order; returns their paths.
    """
    if fps <= 0:
        raise ValueError(f"--fps must be positive, got {fps}")
    av = import_av()

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    start: float | None = None
    next_slot = 0  # the next 1/fps-second slot that still needs a frame
    try:
        opened = av.open(str(path))
    except av.FFmpegError as err:
        raise ValueError(f"cannot open the video {path} ({err}); pass a readable video file (mp4, mov, ...)") from err
    with opened as container:
        if not container.streams.video:
            raise ValueError(f"{path} holds no video stream; pass a video file or a folder of images")
        stream = container.streams.video[0]
        bar = tqdm(desc="decoding video", unit="frame", disable=not progress)
        try:
            for index, frame in enumerate(container.decode(stream)):
                bar.update()
                time = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 30)
                start = time if start is None else start  # streams need not start at 0
                slot = int((time - start) * fps + 1e-6)
                if slot < next_slot:
                    continue
                target = out_dir / f"frame_{len(written) + 1:06d}.png"
                Image.fromarray(frame.to_ndarray(format="rgb24")).save(target)
                written.append(target)
                next_slot = slot + 1
        except av.FFmpegError as err:
            raise ValueError(f"cannot decode the video {path} ({err}); re-encode it or pass extracted frames") from err
        finally:
            bar.close()
    if not written:
        raise ValueError(f"{path} has no decodable frames; pass another video or a folder of images")
    return written
