"""An HDF5 shard in the layout of MCVD's and LGC-VD's converters (``datasets/h5.py::HDF5Maker(video=True)``,
``add_data(frames, dtype='uint8')``), for the tests of the HDF5 reader: groups ``len`` and ``videos``; per video k
``len/<k>`` = its length and ``<k>/<i>`` its frames, lzf-compressed. Needs h5py (the [training] extra)."""
from __future__ import annotations


def write_shard(path, videos) -> None:
    """``videos``: a list of uint8 arrays ``(frames, H, W, 3)``."""
    import h5py
    with h5py.File(path, "w") as f:
        f.create_group("len")
        f.create_group("videos")
        for k, frames in enumerate(videos):
            f["len"].create_dataset(str(k), data=len(frames))
            f.create_group(str(k))
            for i, frame in enumerate(frames):
                f[str(k)].create_dataset(str(i), data=frame, dtype="uint8", compression="lzf")
