"""
Find moments in videos by text, and label every frame
=====================================================

A video is a row like an image: :class:`~sklearn_clip.CLIPNearestNeighbors`
embeds a few frames of each clip (``video={"fps": 1.0}``: one a second),
and :meth:`~sklearn_clip.CLIPNearestNeighbors.search_moments` returns the
frames nearest to a text, each with its clip and its time.

The clips are written here with PyAV (the ``video`` extra):
every second a new coloured shape slides across the picture, so we know what
is on screen when. The model is the small CLIP that the demo trains on
generated shapes (:func:`sklearn_clip.demo.trained_model`, trained the first
time and then cached): it knows colours and shapes, nothing else.
"""

# %%
# Three clips of moving shapes
# ----------------------------
# Each clip is 6 seconds at 10 frames per second; during second ``s`` it
# shows one image of :func:`~sklearn_clip.datasets.make_shapes`, moving two
# pixels a frame.
import tempfile
from pathlib import Path

import av
import matplotlib.pyplot as plt
import numpy as np

from sklearn_clip import CLIPNearestNeighbors, CLIPZeroShotClassifier, load_model
from sklearn_clip.datasets import make_shapes
from sklearn_clip.demo import trained_model

FPS, SECONDS = 10, 6
shapes = make_shapes(3 * SECONDS, image_size=64, random_state=3)
folder = Path(tempfile.mkdtemp())
clips = []
for c in range(3):
    clips.append(folder / f"clip_{c}.mp4")
    with av.open(str(clips[-1]), "w") as out:
        # Lossless (qp 0): the frames decoded are the frames drawn, on every
        # run; x264's lossy choices can vary from one run to the next.
        stream = out.add_stream("libx264", rate=FPS, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(FPS * SECONDS):
            image = shapes.images[c * SECONDS + i // FPS]
            moving = np.roll(image, 2 * (i % FPS) - FPS, axis=1)
            frame = av.VideoFrame.from_ndarray(moving, format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def on_screen(clip, second):
    """What clip ``clip`` shows at ``second`` seconds: the shape we drew."""
    drawn = clips.index(clip) * SECONDS + int(second)
    return f"{shapes.color[drawn]} {shapes.shape[drawn]}"


# %%
# Search the moments
# ------------------
# ``fit`` decodes 6 frames of each clip by seeking, embeds them and keeps
# them with their times (``frames_``); each clip's own embedding (for
# ``kneighbors``) is the mean of its frames'.
model = load_model(trained_model(n_train=4000, max_epochs=20), dtype="float32")
search = CLIPNearestNeighbors(model, video={"fps": 1.0}).fit(clips)
print(f"{len(search.frames_['row'])} frames of {search.n_samples_fit_} clips")

queries = ["a red circle", "a green diamond", "a blue square", "a yellow triangle"]
hits = search.search_moments(queries, 4, query_modality="text")
for query, found in hits.groupby("query"):
    print(f"\n{queries[query]!r}")
    for row, time, distance in zip(found["row"], found["time"], found["distance"]):
        drawn = on_screen(clips[row], time)
        print(f"  {clips[row].name} @ {time:.1f} s  {1 - distance:.2f}  ({drawn})")


# %%
# The hits, re-read from the files
# --------------------------------
# Each hit's frame, decoded with PyAV at its time, titled ``file @ time``.
def frame_at(path, time):
    with av.open(str(path)) as container:
        shown = None
        for frame in container.decode(video=0):
            if frame.time > time and shown is not None:
                break
            shown = frame.to_ndarray(format="rgb24")
    return shown


fig, axes = plt.subplots(len(queries), 4, figsize=(7, 1.9 * len(queries)))
for (query, found), row_axes in zip(hits.groupby("query"), axes):
    for ax, row, time in zip(row_axes, found["row"], found["time"]):
        ax.imshow(frame_at(clips[row], time))
        ax.set_title(f"{clips[row].name} @ {time:.1f} s", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    row_axes[0].set_ylabel(queries[query], rotation=0, ha="right", fontsize=9)
fig.suptitle("Text-to-moment search: four nearest frames per query")
fig.tight_layout()

# %%
# A label track per clip
# ----------------------
# :meth:`~sklearn_clip.CLIPZeroShotClassifier.predict_frames` labels every
# sampled frame, which segments a clip; ``predict`` labels the clip as a
# whole from its pooled embedding.
labels = shapes.color_names
clf = CLIPZeroShotClassifier(
    model, candidate_labels=labels, templates="a {} shape", video={"fps": 1.0}
).fit()
track = clf.predict_frames(clips[:1])
track["drawn"] = [on_screen(clips[0], t) for t in track["time"]]
print(track[["time", "label", "drawn"]].to_string(index=False))
print("whole clips:", clf.predict(clips).tolist())
