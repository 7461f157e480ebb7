"""training/data.py: natural frame order, clip cutting (stride, sample_every), values and shapes, one frame against PIL
by hand, resize/crop geometry and the crop/flip draws, the errors (missing root, no videos, too short, corrupt image,
not-a-video, PyAV missing), the data order (2 processes read what 1 reads, epochs walk a permutation, a resume reads
what the uninterrupted run reads), the moving-shapes set, video files through PyAV (skipped without it), and MCVD /
LGC-VD HDF5 shards through h5py (skipped without it)."""
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from consistent_video_kit.training import data as td
from consistent_video_kit.training.data import (ClipDataset, DatasetError, batch_at, clip_loader, epoch_permutation,
                                                 natural_key, step_indices)
from consistent_video_kit.training.draws import StepDraws


def write_frames(folder, frames):
    """frames: (F, H, W, 3) uint8 → folder/frame_<n>.png (unpadded)."""
    os.makedirs(folder, exist_ok=True)
    for n, f in enumerate(frames):
        Image.fromarray(np.asarray(f, np.uint8)).save(os.path.join(folder, f"frame_{n}.png"))


def grey_frames(n, h=6, w=8):
    """Constant frames whose grey level is 5·(frame number): a loaded clip tells which frames it holds."""
    return np.stack([np.full((h, w, 3), 5 * k, np.uint8) for k in range(n)])


def frame_numbers(clip):
    """(3, F, S, S) of grey frames → the frame number of each slot (asserting each slot is constant)."""
    levels = (clip + 1) * 127.5
    assert torch.equal(levels, levels[:, :, :1, :1].expand_as(levels))
    values = levels[0, :, 0, 0]
    assert torch.allclose(values, values.round(), atol=1e-4)
    return [int(v) // 5 for v in values.round()]


@pytest.fixture
def noise_root(tmp_path):
    """3 videos of 12 noise frames, 40×24 (landscape, so a 16² crop has room to move)."""
    g = np.random.default_rng(0)
    for v in range(3):
        write_frames(str(tmp_path / f"vid_{v}"), g.integers(0, 256, (12, 24, 40, 3), dtype=np.uint8))
    return str(tmp_path)


# --- order of frames and clips ------------------------------------------------------------------------------------

def test_natural_sort_of_names_and_of_a_folders_frames(tmp_path):
    names = ["frame_10.png", "frame_2.png", "frame_1.png", "Frame_3.png", "frame_21.png", "frame_0.png"]
    assert sorted(names, key=natural_key) == ["frame_0.png", "frame_1.png", "frame_2.png", "Frame_3.png",
                                              "frame_10.png", "frame_21.png"]
    assert sorted(["b10/x", "b9/x", "a100/x"], key=natural_key) == ["a100/x", "b9/x", "b10/x"]
    write_frames(str(tmp_path / "v"), grey_frames(12))                 # frame_0 … frame_11, unpadded
    ds = ClipDataset(str(tmp_path), frames=12, size=4)
    assert [os.path.basename(p) for p in ds.videos[0].frames] == [f"frame_{n}.png" for n in range(12)]
    assert frame_numbers(ds[0]) == list(range(12))


def test_clip_counts_and_starts_with_stride_and_sample_every(tmp_path):
    write_frames(str(tmp_path / "long"), grey_frames(40))
    write_frames(str(tmp_path / "short"), grey_frames(5))
    ds = ClipDataset(str(tmp_path), frames=4, size=4)               # default stride 4: non-overlapping
    assert [v.length for v in ds.videos] == [40, 5]
    assert ds.clips == [(0, s) for s in range(0, 37, 4)] + [(1, 0)]
    ds = ClipDataset(str(tmp_path), frames=4, size=4, sample_every=2)  # spans 7 frames, stride 8
    assert ds.clips == [(0, 0), (0, 8), (0, 16), (0, 24), (0, 32)]     # the 5-frame video is too short
    assert ds.frame_indices(1) == [8, 10, 12, 14]
    assert frame_numbers(ds[4]) == [32, 34, 36, 38]
    ds = ClipDataset(str(tmp_path), frames=4, size=4, stride=3)
    assert ds.clips == [(0, s) for s in range(0, 37, 3)] + [(1, 0)]
    assert frame_numbers(ds[2]) == [6, 7, 8, 9]
    ds = ClipDataset(str(tmp_path), frames=5, size=4, stride=35)
    assert ds.clips == [(0, 0), (0, 35), (1, 0)]                      # 35 + 5 = 40 fits exactly
    assert len(ClipDataset(str(tmp_path), frames=41 // 2, size=4, sample_every=2)) == 1   # span 39 ≤ 40


# --- values, pixels and geometry -------------------------------------------------------------------------------

def test_shapes_dtype_and_range(tmp_path):
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    frames[:, :4] = 255
    write_frames(str(tmp_path / "v"), frames)
    clip = ClipDataset(str(tmp_path), frames=4, size=8)[0]
    assert clip.shape == (3, 4, 8, 8) and clip.dtype == torch.float32
    assert clip.min().item() == -1.0 and clip.max().item() == 1.0
    assert torch.all(clip[:, :, :4] == 1.0) and torch.all(clip[:, :, 4:] == -1.0)   # channels-first, rows kept


def test_one_frame_equals_pil_by_hand(tmp_path):
    g = np.random.default_rng(1)
    write_frames(str(tmp_path / "v"), g.integers(0, 256, (2, 48, 80, 3), dtype=np.uint8))
    ds = ClipDataset(str(tmp_path), frames=2, size=32)
    assert ds.resized(0) == (53, 32)                                  # 80·32/48 = 53.3
    with Image.open(tmp_path / "v" / "frame_1.png") as im:
        hand = np.asarray(im.convert("RGB").resize((53, 32), Image.BILINEAR).crop((10, 0, 42, 32)))
    expect = torch.from_numpy(hand.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)
    assert torch.equal(ds[0][:, 1], expect)


def bands(h, w, vertical):
    """Three colour bands (red, green, blue) across the width (vertical bands) or the height."""
    img = np.zeros((h, w, 3), np.uint8)
    n = w if vertical else h
    for c in range(3):
        sl = slice(c * n // 3, (c + 1) * n // 3)
        if vertical:
            img[:, sl, c] = 255
        else:
            img[sl, :, c] = 255
    return img


def dominant(clip, axis_slice, vertical):
    """The dominant channel of clip frame 0 over columns (vertical) or rows in ``axis_slice``."""
    f = clip[:, 0]
    part = f[:, :, axis_slice] if vertical else f[:, axis_slice, :]
    return set(part.argmax(0).flatten().tolist())


@pytest.mark.parametrize("vertical", [True, False])
def test_resize_and_centre_crop_geometry(tmp_path, vertical):
    h, w = (64, 96) if vertical else (96, 64)
    write_frames(str(tmp_path / "v"), np.stack([bands(h, w, vertical)] * 2))
    ds = ClipDataset(str(tmp_path), frames=2, size=32)
    assert ds.resized(0) == ((48, 32) if vertical else (32, 48))
    clip = ds[0]                                                      # bands 16 px wide after the resize; crop at 8
    assert clip.shape == (3, 2, 32, 32)
    assert dominant(clip, slice(0, 6), vertical) == {0}              # red: resized 0–16 → crop 0–8
    assert dominant(clip, slice(10, 22), vertical) == {1}            # green: 16–32 → 8–24
    assert dominant(clip, slice(26, 32), vertical) == {2}            # blue: 32–48 → 24–32
    start = ds.load_clip(0, crop_xy=(16, 0) if vertical else (0, 16))
    assert dominant(start, slice(0, 14), vertical) == {1} and dominant(start, slice(18, 32), vertical) == {2}
    with pytest.raises(ValueError, match="outside the resized"):
        ds.load_clip(0, crop_xy=(17, 0) if vertical else (0, 17))


def test_crop_and_flip_come_from_the_generator(noise_root):
    plain = ClipDataset(noise_root, frames=4, size=16)
    aug = ClipDataset(noise_root, frames=4, size=16, random_crop=True, hflip=True)
    assert aug.resized(0) == (27, 16)
    params = [aug.augment_params(0, torch.Generator().manual_seed(s)) for s in range(40)]
    assert {xy[1] for xy, _ in params} == {0} and len({xy[0] for xy, _ in params}) > 5
    assert all(0 <= xy[0] <= 11 for xy, _ in params) and {f for _, f in params} == {True, False}
    assert aug.augment_params(0, torch.Generator().manual_seed(7)) == params[7]          # deterministic
    assert aug.augment_params(0, None) == ((5, 0), False) == plain.augment_params(0, torch.Generator())
    # the crop does not depend on whether flips are on, and a flip is the left-right mirror of the same crop
    crop_only = ClipDataset(noise_root, frames=4, size=16, random_crop=True)
    for s in range(6):
        (xy, flip), (xy2, flip2) = params[s], crop_only.augment_params(0, torch.Generator().manual_seed(s))
        assert xy == xy2 and flip2 is False
        got = aug.get(0, torch.Generator().manual_seed(s))
        assert torch.equal(got, aug.load_clip(0, xy).flip(-1) if flip else aug.load_clip(0, xy))
    assert torch.equal(plain.get(0, torch.Generator().manual_seed(3)), plain[0])


# --- errors -----------------------------------------------------------------------------------------------------

def short_traceback(e):
    return e.__cause__ is None and e.__suppress_context__ or e.__context__ is None


def test_missing_root_and_no_videos(tmp_path):
    with pytest.raises(DatasetError, match=r"data root .*nowhere does not exist"):
        ClipDataset(str(tmp_path / "nowhere"), 4, 8)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no frames here")
    with pytest.raises(DatasetError) as e:
        ClipDataset(str(tmp_path / "empty"), 4, 8)
    msg = str(e.value)
    assert "no videos found under" in msg and str(tmp_path / "empty") in msg
    assert all(ext in msg for ext in (".jpg", ".jpeg", ".png", ".mp4", ".avi", ".mov", ".mkv", ".webm"))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "empty" / "loose.png")
    with pytest.raises(DatasetError, match="1 images lie directly in the root"):
        ClipDataset(str(tmp_path / "empty"), 4, 8)
    with pytest.raises(DatasetError, match=r"looked for frame folders \(<root>/<video_id>/\*\.png\) and video files "
                                           r"\(\*\.mkv\);"):
        ClipDataset(str(tmp_path / "empty"), 4, 8, exts=(".png", "mkv"))   # only what was asked for


def test_every_video_too_short(tmp_path):
    write_frames(str(tmp_path / "a"), grey_frames(3))
    write_frames(str(tmp_path / "b"), grey_frames(5))
    with pytest.raises(DatasetError) as e:
        ClipDataset(str(tmp_path), frames=4, size=8, sample_every=2)
    msg = str(e.value)
    assert "shorter than one clip" in msg and "needs 7 frames" in msg
    assert f"({tmp_path / 'b'}) has 5" in msg and "2 videos" in msg


def test_corrupt_images_are_named(tmp_path):
    write_frames(str(tmp_path / "v"), grey_frames(8))
    good = (tmp_path / "v" / "frame_5.png").read_bytes()
    (tmp_path / "v" / "frame_5.png").write_bytes(good[: len(good) // 2])          # truncated: fails on decode
    ds = ClipDataset(str(tmp_path), frames=4, size=4)
    ds[0]
    with pytest.raises(DatasetError, match=r"cannot read the image .*frame_5\.png: it is corrupt or not an image") as e:
        ds[1]
    assert short_traceback(e.value)
    (tmp_path / "v" / "frame_0.png").write_text("not a png")                        # the first: fails on listing
    with pytest.raises(DatasetError, match=r"frame_0\.png: it is corrupt or not an image"):
        ClipDataset(str(tmp_path), frames=4, size=4)


def test_frames_of_two_sizes_in_one_video(tmp_path):
    write_frames(str(tmp_path / "v"), grey_frames(4))
    Image.fromarray(np.zeros((7, 8, 3), np.uint8)).save(tmp_path / "v" / "frame_2.png")
    with pytest.raises(DatasetError, match=r"frame_2\.png is 8×7, the video's first frame 8×6"):
        ClipDataset(str(tmp_path), frames=4, size=4)[0]


def test_video_file_without_pyav_says_what_to_install(tmp_path, monkeypatch):
    write_frames(str(tmp_path / "v"), grey_frames(4))
    (tmp_path / "clip.mp4").write_bytes(b"\0" * 64)
    monkeypatch.setitem(sys.modules, "av", None)                                   # import av → ImportError
    with pytest.raises(ImportError, match=r"clip\.mp4.*needs PyAV.*install the training extra \(the packages av "
                                          r"and accelerate\)"):
        ClipDataset(str(tmp_path), frames=4, size=4)
    assert len(ClipDataset(str(tmp_path), frames=4, size=4, exts=td.IMAGE_EXTS)) == 1


# --- data order ---------------------------------------------------------------------------------------------------

def test_epoch_permutation_is_seeded_by_seed_and_epoch():
    p = epoch_permutation(10, seed=3, epoch=0)
    assert p.dtype == torch.int64 and sorted(p.tolist()) == list(range(10))
    assert torch.equal(p, epoch_permutation(10, 3, 0))
    assert not torch.equal(p, epoch_permutation(10, 3, 1)) and not torch.equal(p, epoch_permutation(10, 4, 0))


def test_consecutive_steps_walk_each_epochs_permutation():
    n, G, seed = 12, 4, 5
    walked = [i for step in range(6) for i in step_indices(n, step, G, seed)]
    assert walked[:12] == epoch_permutation(n, seed, 0).tolist()                   # no repeats inside an epoch
    assert walked[12:] == epoch_permutation(n, seed, 1).tolist()
    # a batch crossing an epoch's end: the rest of epoch 0, then the start of epoch 1
    p0, p1 = epoch_permutation(5, seed, 0).tolist(), epoch_permutation(5, seed, 1).tolist()
    assert step_indices(5, 1, 4, seed) == [p0[4]] + p1[:3]
    assert step_indices(5, 1, 4, seed, shuffle=False) == [4, 0, 1, 2]


def test_two_processes_read_the_one_process_batch(noise_root):
    ds = ClipDataset(noise_root, frames=4, size=16, random_crop=True, hflip=True)
    assert len(ds) == 9
    for step in (0, 2, 5):                                                         # 5 crosses into epoch 2
        one = batch_at(ds, step, 4, rank=0, world=1, seed=11)
        parts = [batch_at(ds, step, 4, rank=r, world=2, seed=11) for r in range(2)]
        assert one.clip_indices == step_indices(9, step, 4, 11)
        assert parts[0].clip_indices + parts[1].clip_indices == one.clip_indices
        assert parts[0].sample_indices == [0, 1] and parts[1].sample_indices == [2, 3]
        assert one.clips.shape == (4, 3, 4, 16, 16)
        assert torch.equal(torch.cat([p.clips for p in parts]), one.clips)          # augmentation included
    # the augmentation of a sample is its StepDraws generator's
    one = batch_at(ds, 2, 4, seed=11)
    gen = StepDraws(11, 2, [3]).generators(td.AUGMENT_PURPOSE)[0]
    assert torch.equal(one.clips[3], ds.get(one.clip_indices[3], gen))
    assert not torch.equal(one.clips, batch_at(ds, 2, 4, seed=11, augment=False).clips)
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        batch_at(ds, 0, 5, rank=0, world=2, seed=11)


def test_resume_reads_what_the_uninterrupted_run_reads(noise_root):
    ds = ClipDataset(noise_root, frames=4, size=16, random_crop=True, hflip=True)
    full = list(clip_loader(ds, 4, rank=1, world=2, seed=2, start_step=0, end_step=7))
    resumed = list(clip_loader(ds, 4, rank=1, world=2, seed=2, start_step=4, end_step=7, num_workers=2))
    assert [b.step for b in full] == list(range(7)) and [b.step for b in resumed] == [4, 5, 6]
    for a, b in zip(full[4:], resumed):
        assert a.clip_indices == b.clip_indices and a.sample_indices == b.sample_indices == [2, 3]
        assert torch.equal(a.clips, b.clips)
    assert len(clip_loader(ds, 4, 0, 1, seed=2)) == 3                            # default: one epoch, ⌈9/4⌉ steps


# --- moving shapes ------------------------------------------------------------------------------------------------

def test_moving_shapes_deterministic_in_the_seed(tmp_path):
    a = td.write_moving_shapes(str(tmp_path / "a"), videos=3, frames=20, size=32, seed=0)
    td.write_moving_shapes(str(tmp_path / "b"), videos=2, frames=20, size=32, seed=0)
    td.write_moving_shapes(str(tmp_path / "c"), videos=3, frames=20, size=32, seed=1)
    assert a == [str(tmp_path / "a" / f"shapes_{k}") for k in range(3)]
    assert sorted(os.listdir(a[0]), key=natural_key) == [f"frame_{n}.png" for n in range(20)]
    read = lambda root, k, n: np.asarray(Image.open(os.path.join(root, f"shapes_{k}", f"frame_{n}.png")))
    for k in range(2):
        for n in (0, 7, 19):
            assert np.array_equal(read(tmp_path / "a", k, n), read(tmp_path / "b", k, n))
    assert not np.array_equal(read(tmp_path / "a", 0, 0), read(tmp_path / "c", 0, 0))
    assert not np.array_equal(read(tmp_path / "a", 0, 0), read(tmp_path / "a", 1, 0))   # videos differ
    v = td.moving_shapes(20, 32, seed=0, index=0)
    assert v.shape == (20, 32, 32, 3) and v.dtype == np.uint8
    assert not np.array_equal(v[0], v[10])                                          # the shapes move
    ds = ClipDataset(str(tmp_path / "a"), frames=10, size=32)                       # frame_10 after frame_9
    assert torch.equal(ds[1], torch.from_numpy(v[10:]).permute(3, 0, 1, 2).float() / 127.5 - 1)


# --- video files (PyAV) -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", ["mp4", "mkv"])                                     # mkv: no frame count in header
def test_video_files_read_back(tmp_path, ext):
    pytest.importorskip("av", reason="PyAV (the [training] extra) is not installed")
    written = td.write_moving_shapes_video(str(tmp_path / "sub" / f"shapes.{ext}"), frames=32, size=64, seed=4)
    write_frames(str(tmp_path / "frames_a"), written[:16])
    ds = ClipDataset(str(tmp_path), frames=8, size=64)
    assert [os.path.basename(v.path) for v in ds.videos] == ["frames_a", f"shapes.{ext}"]
    video = ds.videos[1]
    assert (video.kind, video.length, video.width, video.height) == ("file", 32, 64, 64)
    assert ds.clips == [(0, 0), (0, 8), (1, 0), (1, 8), (1, 16), (1, 24)]
    clip = ds[4]                                                                    # frames 16–23 of the file
    assert clip.shape == (3, 8, 64, 64) and clip.min() >= -1 and clip.max() <= 1
    ref = torch.from_numpy(written).permute(3, 0, 1, 2).float() / 127.5 - 1
    err = (clip - ref[:, 16:24]).abs().mean(dim=(0, 2, 3))                         # per frame
    assert err.max() < 0.04, err                                                   # H.264 at crf 12, 4:2:0
    off_by_one = (clip - ref[:, 17:25]).abs().mean(dim=(0, 2, 3))
    assert torch.all(err < off_by_one), (err, off_by_one)                           # the right frames
    every = ClipDataset(str(tmp_path / "sub"), frames=8, size=32, sample_every=4)   # span 29: one clip
    assert every.clips == [(0, 0)] and every[0].shape == (3, 8, 32, 32)


def test_not_a_video_is_named(tmp_path):
    pytest.importorskip("av", reason="PyAV (the [training] extra) is not installed")
    write_frames(str(tmp_path / "v"), grey_frames(4))
    (tmp_path / "notes.mp4").write_text("this is a text file")
    with pytest.raises(DatasetError, match=r"video file .*notes\.mp4: it is corrupt or not a video") as e:
        ClipDataset(str(tmp_path), frames=4, size=4)
    assert short_traceback(e.value)


# --- HDF5 shards (MCVD / LGC-VD converters) -------------------------------------------------------------------------

def write_shard(path, videos):
    pytest.importorskip("h5py")
    from cvk_testkit.hdf5_shard import write_shard as write
    write(path, videos)


def test_hdf5_shards_read_as_the_same_frames_in_folders(tmp_path):
    """Two shards of 12 videos (keys 0–11: natural order, 10 after 9) give the clips the same frames give as PNG
    folders: the folder reader is the reference."""
    g = np.random.default_rng(1)
    videos = [g.integers(0, 256, (n, 10, 14, 3), dtype=np.uint8) for n in [9, 12, 10] * 4]
    (tmp_path / "h5").mkdir()
    write_shard(str(tmp_path / "h5" / "shard_0001.hdf5"), videos[:11])
    write_shard(str(tmp_path / "h5" / "shard_0002.hdf5"), videos[11:])
    for k, frames in enumerate(videos):
        write_frames(str(tmp_path / "png" / f"shard_0001_{k:02d}"), frames)
    a = ClipDataset(str(tmp_path / "h5"), frames=4, size=8, stride=3)
    b = ClipDataset(str(tmp_path / "png"), frames=4, size=8, stride=3)
    assert [v.length for v in a.videos] == [len(v) for v in videos] and [v.key for v in a.videos[:12]] == \
        [str(k) for k in range(11)] + ["0"]
    assert a.clips == b.clips and len(a) > 20
    for i in (0, 5, len(a) - 1):
        assert torch.equal(a.get(i, torch.Generator().manual_seed(i)), b.get(i, torch.Generator().manual_seed(i)))


def test_a_broken_hdf5_shard_is_named(tmp_path):
    pytest.importorskip("h5py")
    (tmp_path / "bad.hdf5").write_bytes(b"not hdf5 at all")
    with pytest.raises(DatasetError, match=r"cannot read the HDF5 file .*bad\.hdf5: it is corrupt or not HDF5"):
        ClipDataset(str(tmp_path), frames=2, size=4)
    (tmp_path / "bad.hdf5").unlink()
    import h5py
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(DatasetError, match=r"other\.h5 is not a video shard: no 'len' group"):
        ClipDataset(str(tmp_path), frames=2, size=4)


def test_hdf5_without_h5py_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "s.hdf5").write_bytes(b"\0" * 64)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"s\.hdf5 needs h5py.*install the training extra"):
        ClipDataset(str(tmp_path), frames=2, size=4)
