"""The sampling rule: which frames of a clip are embedded, and how they are pooled."""

from dataclasses import dataclass

from sklearn_clip._options import VIDEO_POOLINGS

#: The sampling rule's default: this many frames spread over each clip.
DEFAULT_FRAMES = 8


@dataclass(frozen=True)
class VideoSampling:
    """Which frames of a clip are embedded, and how they are pooled.

    The rule: a clip of duration ``D`` seconds starting at ``s`` is cut into
    ``n`` equal parts and the frame on screen at the middle of each is taken,
    at ``t_k = s + (k + 1/2) * D / n``. ``n`` is ``frames``, or with ``fps``
    ``round(D * fps)`` (one frame per ``1 / fps`` seconds), at least 1 and at
    most the number of frames the clip has, so a short clip gives each of its
    frames once rather than repeats.

    Parameters
    ----------
    frames : int, default=8
        Frames per clip; ignored when ``fps`` is given.
    fps : float, default=None
        Frames per second of video instead of a fixed count.
    pooling : {"mean", "max"}, default="mean"
        How a clip's frame embeddings become its embedding: their mean (or
        element-wise maximum), scaled to unit length when the estimator
        normalises embeddings.

    Examples
    --------
    >>> from sklearn_clip._encoding.video_sampling import VideoSampling
    >>> VideoSampling(frames=4).times(0.0, 2.0, n_frames=50)
    [0.25, 0.75, 1.25, 1.75]
    >>> len(VideoSampling(fps=2).times(0.0, 10.0, n_frames=250))
    20
    """

    frames: int = DEFAULT_FRAMES
    fps: float | None = None
    pooling: str = "mean"

    @classmethod
    def from_param(cls, video):
        """The rule an estimator's ``video`` parameter (None or a dict) asks for."""
        if video is None:
            return cls()
        keys = {"frames", "fps", "pooling"}
        if not isinstance(video, dict) or not set(video) <= keys:
            raise ValueError(
                "video must be None or a dict with the keys 'frames', 'fps' or "
                f"'pooling', e.g. {{'frames': 16}} or {{'fps': 1.0}}; got {video!r}"
            )
        sampling = cls(**video)
        sampling.check()
        return sampling

    def check(self):
        count = self.frames
        if self.fps is None and (not isinstance(count, int) or count < 1):
            raise ValueError(f"video 'frames' must be an integer >= 1; got {count!r}")
        fps = self.fps
        if fps is not None and not (isinstance(fps, int | float) and fps > 0):
            raise ValueError(f"video 'fps' must be a number > 0; got {fps!r}")
        if self.pooling not in VIDEO_POOLINGS:
            raise ValueError(
                f"video 'pooling' must be one of {VIDEO_POOLINGS}; got {self.pooling!r}"
            )

    def times(self, start, duration, n_frames=None):
        """The times, in seconds, of the frames taken from one clip."""
        n = self.frames if self.fps is None else round(duration * self.fps)
        if n_frames:
            n = min(n, n_frames)
        n = max(n, 1)
        return [start + (k + 0.5) * duration / n for k in range(n)]
