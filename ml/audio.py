"""Audio jobs: decode an uploaded recording, find its chorus, describe it, score it as a hit, tag it.

Pure numpy/scipy with librosa, soundfile, scikit-learn and torch imported inside the functions that
need them, so a web process that imports this module loads none of them (a test asserts views never
import torch). audiences/tasks.py calls `analyse(file, name=…, offset=…, hit_model=…, tagger=…)` for an
upload and stores the JSON it returns; the training jobs collect each analysed item's chorus
spectrogram and engagement and call `train_hit_model` / `train_tagger`, storing the bytes they return.

The pipeline, and why each step is what it is:

1. `decode`: soundfile (libsndfile reads wav, ogg/vorbis, flac and mp3), audioread as a fallback
   where a system decoder exists; channels averaged to mono, resampled to 22,050 Hz with soxr —
   every later number (frames, bands) assumes one rate, so models learnt on one upload apply to all.
   Anything unreadable becomes an `AudioError` whose message an operator can act on.
2. `check_recording`: under 10 s there is no chorus to find and too little to describe; a digitally
   silent file has nothing at all; over 20 min it is a set, not a track (and would take too much
   memory). 10–30 s is analysed whole, and the result says so.
3. `find_chorus`: the chorus is the part a listener remembers — it comes back, and it is usually the
   loudest. Chroma (pitch classes, ~5 frames/s, A = 440 Hz assumed) follows harmony and melody, not
   the mix, so a chorus sung over different drums still matches itself. Every 10 s phrase gets a
   *repetition* strength: its mean self-similarity along the diagonal against each non-overlapping
   phrase, summed over its best three recurrences; a 30 s window's repetition is the mean over its
   phrases (a whole window rarely recurs — the verse before each chorus differs — its phrases do).
   Windows are also scored by *energy* (mean power in dB); both are scaled to 0–1 across the
   track's windows and weighted equally. The explanation names the window's most repeated phrase
   and where it comes back. An operator's offset overrides the search.
4. `log_mel`: 64 mel bands × 1,292 frames (30 s at hop 512), power in dB against a fixed reference
   (not the clip's own maximum), so a loud master and a quiet demo look different to the model —
   loudness is part of what listeners react to. Shorter clips are padded with the floor (−100 dB).
5. `descriptors`: tempo, loudness (RMS dBFS, and integrated loudness in LUFS after ITU-R BS.1770:
   K-weighting and gating — what streaming services normalise to), loudness range (EBU R128 LRA
   style), crest factor, spectral centroid / bandwidth / roll-off / flatness (librosa's definitions,
   averaged over the frames that hold sound), zero-crossing rate, onset rate, and a key guess
   (Krumhansl–Schmuckler profiles on the mean chroma). One STFT serves them and the chorus finder.
6. `HitModel`: a CNN of three small conv blocks reads local timbre and rhythm from the log-mel; a
   GRU reads how that develops over the 30 s (a hook that returns, a build); a linear head gives the
   hit score. It learns the *percentile rank* of the engagement within the training catalogue, so a
   score of 0.8 reads "likely to engage better than 80 % of the catalogue", whatever the engagement
   measure's scale or skew. `train_hit_model` holds out 20 %, and reports MAE, Spearman and the AUC of
   "top quartile" on it, next to a ridge regression on the descriptors: the CNN earns its keep only
   if it beats that.
7. Tagging: a multinomial logistic regression per question (genre, mood) on the descriptors plus each
   mel band's mean and spread over the chorus — small, quick to retrain, and its accuracy is held-out.
   Stored as plain arrays (npz, no pickle), so predicting needs numpy only.
"""

from __future__ import annotations

import functools
import io
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Sequence

import numpy as np

Progress = Callable[[float, str], None]
Source = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]

SR = 22050
CHORUS_SECONDS = 30.0
MIN_SECONDS = 10.0
MAX_SECONDS = 20 * 60.0  # a track, not a DJ set: bounds the memory one job takes (the spectrogram of 20 min ≈ 200 MB)
N_MELS = 64
HOP = 512
N_FFT = 2048
FLOOR_DB = -100.0
SILENT_PEAK_DBFS = -60.0  # below this nothing but noise floor remains
FORMATS = "a wav, ogg, flac or mp3 file"

# The descriptors the tagger and the hit model's baseline read, in this order.
DESCRIPTOR_FEATURES = (
    "tempo_bpm", "loudness_lufs", "loudness_dbfs", "loudness_range_lu", "crest_factor_db", "spectral_centroid_hz",
    "spectral_bandwidth_hz", "spectral_rolloff_hz", "spectral_flatness", "zero_crossing_rate", "onset_rate", "mode_score",
)


class AudioError(ValueError):
    """A recording the audio job cannot use; the message is meant for the operator who uploaded it."""


def _label(source: Any, name: str) -> str:
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return getattr(source, "name", None) and Path(str(source.name)).name or "the upload"


def _dbfs(power: float) -> float:
    """Mean power as dB relative to full scale, floored at −120 (JSON has no −inf)."""
    return round(max(10.0 * math.log10(power) if power > 0 else -120.0, -120.0), 2)


# --------------------------------------------------------------------------------------------- decode


def _read(source: Source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        return Path(source).read_bytes()
    if hasattr(source, "seek"):
        source.seek(0)
    return source.read()


def _audioread(data: bytes, suffix: str) -> tuple[np.ndarray, int]:
    """Decode with audioread (ffmpeg / GStreamer where installed): the fallback for mp3 oddities libsndfile refuses."""
    import warnings

    with warnings.catch_warnings(), tempfile.NamedTemporaryFile(suffix=suffix) as f:
        warnings.simplefilter("ignore", DeprecationWarning)  # audioread imports modules Python 3.13 removes
        import audioread

        f.write(data)
        f.flush()
        with audioread.audio_open(f.name) as audio:
            rate, channels = audio.samplerate, audio.channels
            pcm = b"".join(audio)
    y = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    return y.reshape(-1, channels), rate


def decode(source: Source, *, name: str = "", sr: int = SR) -> tuple[np.ndarray, int]:
    """A recording as (mono float32 samples in [−1, 1], sr): a path, bytes or an open binary file.

    Raises AudioError("could not decode <name>: not a wav, ogg, flac or mp3 file (<reason>)") for
    anything else, an empty file, or a file without a single sample.
    """
    label = _label(source, name)
    try:
        data = _read(source)
    except OSError as exc:
        raise AudioError(f"could not decode {label}: the file could not be read ({exc.strerror or exc})") from exc
    if not data:
        raise AudioError(f"could not decode {label}: not {FORMATS} (the file is empty)")
    import soundfile

    try:
        y, native = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile reports every malformed input differently; all mean "cannot read"
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        try:
            y, native = _audioread(data, Path(label).suffix or ".mp3")
        except Exception:  # no system decoder, or it failed too: soundfile's reason is the telling one
            raise AudioError(f"could not decode {label}: not {FORMATS} ({reason})") from exc
    if y.size == 0:
        raise AudioError(f"could not decode {label}: the file holds no audio samples")
    mono = np.nan_to_num(y.mean(axis=1), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    if native != sr:
        import librosa

        mono = librosa.resample(mono, orig_sr=native, target_sr=sr, res_type="soxr_hq").astype(np.float32)
    return np.ascontiguousarray(mono), sr


def check_recording(y: np.ndarray, sr: int, *, name: str = "", minimum: float = MIN_SECONDS) -> None:
    """Raise AudioError when the recording is too short or too long to analyse, or silent."""
    label = name or "the recording"
    seconds = len(y) / sr
    if seconds < minimum:
        raise AudioError(f"{label} is too short: {seconds:.1f} s of audio, at least {minimum:.0f} s are needed "
                         f"({CHORUS_SECONDS:.0f} s are scored; a clip of {minimum:.0f}–{CHORUS_SECONDS:.0f} s is used whole)")
    if seconds > MAX_SECONDS:
        raise AudioError(f"{label} is too long: {seconds / 60:.1f} min of audio, at most {MAX_SECONDS / 60:.0f} min are "
                         "analysed (upload the track, not a whole set or album)")
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    peak_db = 20.0 * math.log10(peak) if peak > 0 else -math.inf
    if peak_db < SILENT_PEAK_DBFS:
        shown = "−∞" if peak == 0 else f"{peak_db:.0f}"
        raise AudioError(f"{label} is silent: its loudest sample is {shown} dBFS (below {SILENT_PEAK_DBFS:.0f} dBFS)")


# --------------------------------------------------------------------------------------------- chorus


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


@dataclass(frozen=True)
class Chorus:
    """The window the models hear, and the reasons an operator reads."""

    start: float
    seconds: float
    why: str
    chosen_by: str  # "finder", "operator" or "whole"
    repeats: int = 0  # other places the window's most repeated phrase comes back (finder only)
    energy_top_percent: float | None = None


def _power(y: np.ndarray) -> np.ndarray:
    """|STFT|² (n_fft 2048, hop 512, centred frames) as float32: the one spectrogram every step reads."""
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if len(y) < N_FFT:
        y = np.pad(y, (0, N_FFT - len(y)))
    # librosa's centred frames, computed 4,096 at a time: the complex STFT of a long upload would be
    # twice the size of the power we keep.
    padded = np.pad(y, N_FFT // 2)
    frames = 1 + len(y) // HOP
    power = np.empty((N_FFT // 2 + 1, frames), dtype=np.float32)
    for first in range(0, frames, 4096):
        last = min(frames, first + 4096)
        part = librosa.stft(padded[first * HOP:(last - 1) * HOP + N_FFT], n_fft=N_FFT, hop_length=HOP, center=False)
        power[:, first:last] = np.abs(part) ** 2
    return power


@functools.cache
def _filters(sr: int, n_mels: int = N_MELS) -> tuple[np.ndarray, np.ndarray]:
    """librosa's mel (Slaney) and chroma filter banks for N_FFT, built once per rate (a BLAS product applies them)."""
    import librosa

    mel = librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=n_mels).astype(np.float32)
    chroma = librosa.filters.chroma(sr=sr, n_fft=N_FFT, tuning=0.0).astype(np.float32)  # A = 440 Hz assumed
    return mel, chroma


def _chroma(power: np.ndarray, sr: int) -> np.ndarray:
    """Chroma per frame, each frame scaled to a maximum of 1 (as librosa.feature.chroma_stft)."""
    raw = _filters(sr)[1] @ power
    return raw / np.maximum(raw.max(axis=0, keepdims=True), 1e-12)


def _chorus_features(y: np.ndarray, sr: int, power: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-frame chroma (time-delay embedded, centred, unit length) and mean power, and the frame rate (≈ 5.4/s)."""
    import librosa

    blocks = len(y) // HOP
    frames = min(power.shape[1], blocks)
    chroma = _chroma(power[:, :frames], sr)
    rows = np.asarray(y[: blocks * HOP], dtype=np.float32).reshape(-1, HOP)
    energy = (np.einsum("ij,ij->i", rows, rows) / HOP)[:frames].astype(np.float64)
    pool = max(8, math.ceil(frames / 2000))  # ≤ 2,000 frames keeps the similarity matrix small for long uploads
    usable = frames // pool * pool
    chroma = chroma[:, :usable].reshape(12, -1, pool).mean(axis=2)
    energy = energy[:usable].reshape(-1, pool).mean(axis=1)
    # Centring removes what every frame shares (noise has a flat chroma, and flat vectors all look alike);
    # stacking four frames (≈ 0.75 s) compares short phrases, not single chords.
    chroma = np.log1p(10.0 * chroma)
    chroma -= chroma.mean(axis=0, keepdims=True)
    stacked = librosa.feature.stack_memory(chroma, n_steps=4, delay=1, mode="edge")
    stacked /= np.maximum(np.linalg.norm(stacked, axis=0, keepdims=True), 1e-9)
    return stacked.astype(np.float32), energy, sr / (HOP * pool)


def _find(y: np.ndarray, sr: int, length: float, power: np.ndarray | None = None) -> Chorus:
    from scipy.ndimage import maximum_filter1d

    duration = len(y) / sr
    features, energy, fps = _chorus_features(y, sr, _power(y) if power is None else power)
    n = features.shape[1]
    w = max(1, min(n, int(round(length * fps))))
    windows = n - w + 1
    if windows < 2:
        return Chorus(0.0, min(length, duration), "the recording barely exceeds the chorus length: its start is used", "finder")
    # Repetition is measured on phrases (a third of the window, ≤ 10 s) and averaged over the window: a
    # 30 s window rarely recurs whole (the verse before a chorus changes), the chorus's phrases do.
    p = max(1, min(w, int(round(min(length / 3.0, 10.0) * fps))))
    phrases = n - p + 1
    sim = features.T @ features
    # Sums along each diagonal, so the mean similarity of phrase s against phrase j is one subtraction.
    diag = np.zeros((n + 1, n + 1), dtype=np.float32)  # sums of ≤ 2,000 terms of |x| ≤ 1: float32 is plenty
    for a in range(n):
        diag[a + 1, 1:] = diag[a, :-1] + sim[a]
    starts = np.arange(phrases)
    recur = (diag[starts[:, None] + p, starts[None, :] + p] - diag[starts[:, None], starts[None, :]]) / p
    valid = np.abs(starts[:, None] - starts[None, :]) >= p  # copies that do not overlap the phrase
    recur = np.where(valid, recur, np.float32(-1.0))
    baseline = float(np.median(recur[valid])) if valid.any() else 0.0
    peaks = valid & (recur >= maximum_filter1d(recur, size=p, axis=1, mode="constant", cval=-1.0))
    heights = np.where(peaks, np.clip(recur - np.float32(baseline), 0.0, None), np.float32(0.0))
    strength = np.sort(heights, axis=1)[:, -3:].sum(axis=1)  # its best three recurrences
    repetition = np.convolve(strength, np.ones(w - p + 1) / (w - p + 1), mode="valid")[:windows]

    power = np.convolve(energy, np.ones(w) / w, mode="valid")[:windows]
    level = 10.0 * np.log10(np.maximum(power, 1e-12))
    spread = float(level.max() - level.min())
    loudness = (level - level.min()) / spread if spread > 1e-6 else np.zeros(windows)
    rep_scale = float(repetition.max())
    score = 0.5 * (repetition / rep_scale if rep_scale > 1e-9 else 0.0) + 0.5 * loudness
    best = int(np.argmax(score))

    # The window's most repeated phrase, and where it comes back: a recurrence "counts" when it matches at
    # least halfway from the typical pair of phrases to a perfect match.
    phrase = best + int(np.argmax(strength[best:best + w - p + 1]))
    threshold = baseline + 0.5 * (1.0 - baseline)
    again = sorted(int(j) for j in np.flatnonzero(peaks[phrase] & (recur[phrase] >= threshold)))
    start = min(best / fps, max(0.0, duration - length))
    top_percent = max(1.0, math.ceil(100.0 * float(np.mean(level >= level[best]))))
    energy_text = f"energy in the top {top_percent:.0f} % of the track"
    if again:
        times = ", ".join(_clock(j / fps) for j in again[:4])
        why = (f"most repeated and energetic {length:.0f} s: its phrase at {_clock(phrase / fps)} is heard "
               f"{len(again) + 1}× (also at {times}), {energy_text}")
    elif top_percent <= 25 or rep_scale <= 1e-9:
        why = f"no clear repeat found; the most energetic {length:.0f} s ({energy_text})"
    else:
        why = (f"no clear repeat found; the {length:.0f} s that come back most (in part: similarity "
               f"{float(recur[phrase][valid[phrase]].max()):.2f} at best, {baseline:.2f} typical), {energy_text}")
    return Chorus(round(start, 2), length, why, "finder", len(again), top_percent)


def _chorus(y: np.ndarray, sr: int, *, length: float, offset: float | None, name: str, power: np.ndarray | None = None) -> Chorus:
    check_recording(y, sr, name=name)
    duration = len(y) / sr
    label = name or "the recording"
    if offset is not None:
        if not math.isfinite(offset):
            raise AudioError(f"the chorus offset must be a number of seconds, got {offset}")
        if offset >= duration:
            raise AudioError(f"the chorus offset {offset:.1f} s lies beyond the end of {label} ({duration:.1f} s)")
    if duration <= length:
        why = f"the recording is {duration:.1f} s, shorter than {length:.0f} s: used whole"
        if offset is not None and offset > 0:
            why += f" (the offset {offset:.1f} s is ignored)"
        return Chorus(0.0, duration, why, "whole")
    if offset is not None:
        start = min(max(offset, 0.0), duration - length)
        why = f"the operator's offset {offset:.1f} s"
        if start != offset:
            why += f", moved to {start:.1f} s so that {length:.0f} s fit in the recording"
        return Chorus(round(start, 2), length, why, "operator")
    return _find(y, sr, length, power)


def find_chorus(y: np.ndarray, sr: int, *, length: float = CHORUS_SECONDS, offset: float | None = None,
                name: str = "") -> tuple[float, str]:
    """Start (s) of the chorus-like `length` seconds and why they were chosen.

    With an operator's offset, that offset (moved back if the window would run past the end; an
    AudioError if it lies beyond the end). A recording no longer than `length` starts at 0, whole.
    """
    chorus = _chorus(y, sr, length=length, offset=offset, name=name)
    return chorus.start, chorus.why


# --------------------------------------------------------------------------------------------- spectrogram


def frames_for(seconds: float = CHORUS_SECONDS, sr: int = SR, hop: int = HOP) -> int:
    """Spectrogram frames of `seconds` of audio (1,292 for 30 s at 22,050 Hz, hop 512)."""
    return 1 + int(seconds * sr) // hop


def log_mel(y: np.ndarray, sr: int, *, n_mels: int = N_MELS, hop: int = HOP, seconds: float = CHORUS_SECONDS) -> np.ndarray:
    """(n_mels, frames_for(seconds)) float32 log-mel power in dB: the first `seconds`, padded with −100 dB.

    The reference is fixed (power 1 on a full-scale STFT scaled by the window sum), not the clip's
    maximum: halving the amplitude lowers every band by 6 dB.
    """
    import librosa

    frames = frames_for(seconds, sr, hop)
    segment = np.asarray(y[: int(seconds * sr)], dtype=np.float32)
    if len(segment) < N_FFT:
        segment = np.pad(segment, (0, N_FFT - len(segment)))
    window_gain = (N_FFT / 2) ** 2  # a full-scale sine's peak bin power under a Hann window of N_FFT
    if hop == HOP:
        mel = _filters(sr, n_mels)[0] @ _power(segment)
    else:
        mel = librosa.feature.melspectrogram(y=segment, sr=sr, n_fft=N_FFT, hop_length=hop, n_mels=n_mels, power=2.0)
    db = 10.0 * np.log10(np.maximum(mel / window_gain, 1e-10))
    db = np.maximum(db, FLOOR_DB)[:, :frames]
    if db.shape[1] < frames:
        db = np.pad(db, ((0, 0), (0, frames - db.shape[1])), constant_values=FLOOR_DB)
    return db.astype(np.float32)


# --------------------------------------------------------------------------------------------- descriptors


def _biquad(kind: str, sr: int, fc: float, q: float, gain_db: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """RBJ-cookbook biquads, as pyloudnorm builds the BS.1770 K-weighting for any sample rate."""
    a_ = 10 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * fc / sr
    alpha, cw = math.sin(w0) / (2.0 * q), math.cos(w0)
    if kind == "high_shelf":
        sa = 2.0 * math.sqrt(a_) * alpha
        b = [a_ * ((a_ + 1) + (a_ - 1) * cw + sa), -2 * a_ * ((a_ - 1) + (a_ + 1) * cw), a_ * ((a_ + 1) + (a_ - 1) * cw - sa)]
        a = [(a_ + 1) - (a_ - 1) * cw + sa, 2 * ((a_ - 1) - (a_ + 1) * cw), (a_ + 1) - (a_ - 1) * cw - sa]
    else:  # high pass
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    return np.array(b) / a[0], np.array(a) / a[0]


def loudness(y: np.ndarray, sr: int) -> tuple[float, float]:
    """Integrated loudness (LUFS, ITU-R BS.1770-4, mono) and loudness range (LU, EBU Tech 3342 style).

    K-weighting (a +4 dB shelf above ~1.5 kHz and a 38 Hz high-pass), 400 ms blocks every 100 ms, an
    absolute gate at −70 LUFS and a relative gate 10 LU under the gated mean. The range is the spread
    between the 10th and 95th percentile of 3 s short-term loudness, gated at −70 LUFS and 20 LU under.
    The filters run in float64 a chunk at a time (their state carried over), keeping only the energy
    of each 100 ms: a 20 min upload needs a few MB, not a float64 copy of itself per filter.
    """
    from scipy.signal import lfilter

    step = max(1, int(round(0.1 * sr)))
    segments = len(y) // step
    if segments < 4:
        return -120.0, 0.0
    filters = [_biquad(kind, sr, fc, q, g) for kind, fc, q, g in
               (("high_shelf", 1500.0, 1 / math.sqrt(2), 4.0), ("high_pass", 38.0, 0.5, 0.0))]
    state = [np.zeros(2), np.zeros(2)]
    energy = []
    for first in range(0, segments * step, 256 * step):
        part = np.asarray(y[first:min(first + 256 * step, segments * step)], dtype=np.float64)
        for i, (b, a) in enumerate(filters):
            part, state[i] = lfilter(b, a, part, zi=state[i])
        rows = part.reshape(-1, step)
        energy.append(np.einsum("ij,ij->i", rows, rows))
    cumulative = np.concatenate([[0.0], np.cumsum(np.concatenate(energy))])

    def mean_power(span: int, every: int) -> np.ndarray:
        starts = np.arange(0, segments - span + 1, every)
        return (cumulative[starts + span] - cumulative[starts]) / (span * step)

    def lufs(power):
        return -0.691 + 10.0 * np.log10(np.maximum(power, 1e-30))

    blocks = mean_power(4, 1)
    gated = blocks[lufs(blocks) > -70.0]
    if not len(gated):
        integrated = -120.0
    else:
        relative = lufs(gated.mean()) - 10.0
        kept = gated[lufs(gated) > relative]
        integrated = float(lufs(kept.mean()))
    lra = 0.0
    if segments >= 30:
        short = mean_power(30, 10)
        short = short[lufs(short) > -70.0]
        if len(short) >= 2:
            short = short[lufs(short) > lufs(short.mean()) - 20.0]
            levels = lufs(short)
            lra = float(np.percentile(levels, 95) - np.percentile(levels, 10))
    return round(max(integrated, -120.0), 2), round(lra, 2)


def _tempo(onset: np.ndarray, sr: int, hop: int) -> float:
    """Tempo (bpm): librosa's tempogram estimate picks the octave, the onset autocorrelation refines it.

    librosa's estimate (a log-normal prior around 120 bpm on the mean local autocorrelation) settles
    the octave the way its users expect, but it is quantised to whole lags: at 43 frames/s, 120 bpm
    comes out as 117.5 or 123.0. The period is therefore refined by fitting the peaks of the whole
    track's onset autocorrelation near every multiple of that lag up to ~8 s (parabolic interpolation
    on each, weighted by the peak's height): eight beats together pin it to a few tenths of a bpm.
    """
    import librosa

    fps = sr / hop
    n = len(onset)
    if n < 8 or not np.any(onset - onset.mean()):
        return 0.0
    # The tempogram costs ~15 kB per frame; the central two minutes settle the octave of any track.
    keep = int(120 * fps)
    middle = onset[max(0, (n - keep) // 2):][:keep]
    coarse = float(librosa.feature.tempo(onset_envelope=middle, sr=sr, hop_length=hop)[0])
    if not coarse > 0:
        return 0.0
    # A light smoothing (σ ≈ 1 frame): a period of 18.5 frames puts onsets 18 and 19 frames apart, and
    # without it neither lag shows the peak's true height.
    o = np.convolve(onset - onset.mean(), [0.0625, 0.25, 0.375, 0.25, 0.0625], mode="same")
    ac = np.fft.irfft(np.abs(np.fft.rfft(o, 2 * n)) ** 2)[:n]
    ac = ac / ac[0]
    best = int(round(60.0 * fps / coarse))
    num = den = 0.0
    m = 1
    while m * best + m + 1 < n and m * best <= 8 * fps:
        reach = max(1, min(m, best // 3))
        a, b = max(1, m * best - reach), m * best + reach
        k = a + int(np.argmax(ac[a:b + 1]))
        delta = 0.0
        curve = ac[k - 1] - 2 * ac[k] + ac[k + 1]
        if curve < 0:
            delta = float(np.clip(0.5 * (ac[k - 1] - ac[k + 1]) / curve, -0.5, 0.5))
        weight = max(float(ac[k]), 0.0)
        num += weight * m * (k + delta)
        den += weight * m * m
        m += 1
    period = num / den if den > 0 else 60.0 * fps / coarse
    refined = 60.0 * fps / period
    # Trust the refinement only near the coarse estimate (it cannot change the octave, only the decimals).
    return round(refined if abs(refined - coarse) <= 0.05 * coarse else coarse, 2)


NOTES = ("C", "C♯", "D", "E♭", "E", "F", "F♯", "G", "A♭", "A", "B♭", "B")
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _key(mean_chroma: np.ndarray) -> tuple[str, float, float]:
    """Krumhansl–Schmuckler: the key whose profile correlates best with the mean chroma; also major − minor fit."""
    if not np.any(mean_chroma - mean_chroma.mean()):
        return "", 0.0, 0.0
    major = np.array([np.corrcoef(mean_chroma, np.roll(_MAJOR, k))[0, 1] for k in range(12)])
    minor = np.array([np.corrcoef(mean_chroma, np.roll(_MINOR, k))[0, 1] for k in range(12)])
    if major.max() >= minor.max():
        name, fit = f"{NOTES[int(major.argmax())]} major", float(major.max())
    else:
        name, fit = f"{NOTES[int(minor.argmax())]} minor", float(minor.max())
    return name, round(fit, 3), round(float(major.max() - minor.max()), 3)


def _mean_square(y: np.ndarray) -> float:
    """Mean of y², summed in float64 a million samples at a time (no float64 copy of a long upload)."""
    chunk = 2**20
    return sum(float(np.dot(part, part)) for part in (y[i:i + chunk].astype(np.float64) for i in range(0, len(y), chunk))) / len(y)


def _spectral_shape(power: np.ndarray, sr: int, chunk: int = 2048) -> tuple[float, float, float, float]:
    """Mean spectral centroid, bandwidth, 85 % roll-off (Hz) and flatness over the frames that hold sound.

    librosa's definitions, in numpy on the one STFT and a chunk of frames at a time: librosa's versions
    recompute and renormalise per call, and the temporaries of a whole long track cost hundreds of MB.
    """
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sr).astype(np.float32)[:, None]
    sums, frames = np.zeros(4), 0
    for first in range(0, power.shape[1], chunk):
        block = power[:, first:first + chunk]
        m = np.sqrt(block)
        total = m.sum(axis=0)
        heard = total > 1e-8
        if not heard.any():
            continue
        m, block, total = m[:, heard], block[:, heard], total[heard]
        c = (freqs * m).sum(axis=0) / total
        sums[0] += c.sum()
        sums[1] += np.sqrt(((freqs - c) ** 2 * m).sum(axis=0) / total).sum()
        sums[2] += freqs[np.argmax(np.cumsum(m, axis=0) >= 0.85 * total, axis=0), 0].sum()
        p = np.maximum(block, 1e-10)
        sums[3] += (np.exp(np.log(p).mean(axis=0)) / p.mean(axis=0)).sum()
        frames += int(heard.sum())
    centroid, bandwidth, rolloff, flatness = (sums / frames if frames else sums).tolist()
    return centroid, bandwidth, rolloff, flatness


def descriptors(y: np.ndarray, sr: int, *, power: np.ndarray | None = None) -> dict[str, Any]:
    """What the recording sounds like, in numbers (JSON-ready).

    duration_s; tempo_bpm; loudness_dbfs (RMS), loudness_lufs (integrated, BS.1770), loudness_range_lu,
    peak_dbfs, crest_factor_db (peak over RMS: low for heavily limited masters); spectral_centroid_hz
    (brightness), spectral_bandwidth_hz, spectral_rolloff_hz (85 % of the energy below), spectral_flatness
    (0 tonal … 1 noise), zero_crossing_rate (per sample), onset_rate (note / drum onsets per second); key
    ("F♯ minor"), key_confidence (the profile correlation) and mode_score (best major − best minor fit).
    `power`: this recording's `_power` spectrogram when the caller already has it.
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if len(y) < N_FFT:
        y = np.pad(y, (0, N_FFT - len(y)))
    power = _power(y) if power is None else power
    mel_db = librosa.power_to_db(_filters(sr)[0] @ power)
    onset = librosa.onset.onset_strength(S=mel_db, sr=sr, hop_length=HOP)
    onsets = librosa.onset.onset_detect(onset_envelope=onset, sr=sr, hop_length=HOP)
    key, key_fit, mode_score = _key(_chroma(power, sr).mean(axis=1))
    lufs, lra = loudness(y, sr)
    mean_power = _mean_square(y)
    peak = float(np.max(np.abs(y)))
    seconds = len(y) / sr

    centroid, bandwidth, rolloff, flatness = _spectral_shape(power, sr)
    signs = np.signbit(y)

    return {
        "duration_s": round(seconds, 2),
        "tempo_bpm": _tempo(onset, sr, HOP),
        "loudness_dbfs": _dbfs(mean_power),
        "loudness_lufs": lufs,
        "loudness_range_lu": lra,
        "peak_dbfs": _dbfs(peak**2),
        "crest_factor_db": round(_dbfs(peak**2) - _dbfs(mean_power), 2),
        "spectral_centroid_hz": round(centroid, 1),
        "spectral_bandwidth_hz": round(bandwidth, 1),
        "spectral_rolloff_hz": round(rolloff, 1),
        "spectral_flatness": round(flatness, 5),
        "zero_crossing_rate": round(float(np.mean(signs[1:] != signs[:-1])), 5),
        "onset_rate": round(len(onsets) / seconds, 3),
        "key": key,
        "key_confidence": key_fit,
        "mode_score": mode_score,
    }


def descriptor_vector(values: dict[str, Any]) -> np.ndarray:
    """The numeric descriptors models read, in DESCRIPTOR_FEATURES order."""
    return np.array([float(values.get(k) or 0.0) for k in DESCRIPTOR_FEATURES], dtype=np.float64)


# --------------------------------------------------------------------------------------------- hit model


def _percentile_ranks(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mid-rank share of `reference` below each value: 0.5 for the median, never exactly 0 or 1."""
    ref = np.sort(reference)
    below = np.searchsorted(ref, values, side="left")
    upto = np.searchsorted(ref, values, side="right")
    return (below + upto + 1) / (2.0 * len(ref) + 2.0)


@functools.cache
def _hit_model_class():
    import torch
    from torch import nn

    class HitModel(nn.Module):
        """log-mel (batch, n_mels, frames) → hit score in [0, 1]: three conv blocks, a GRU over time, a linear head.

        The spectrogram is standardised per band with the training set's statistics (kept as buffers,
        so they travel with the weights) and averaged over `pool` frames first (93 ms steps): rhythm
        survives, the model is four times cheaper.
        """

        def __init__(self, n_mels: int = N_MELS, channels: tuple[int, ...] = (8, 16, 32), hidden: int = 32, pool: int = 4,
                     dropout: float = 0.3):
            super().__init__()
            self.config = {"n_mels": n_mels, "channels": list(channels), "hidden": hidden, "pool": pool, "dropout": dropout}
            self.pool = pool
            self.register_buffer("band_mean", torch.zeros(n_mels))
            self.register_buffer("band_std", torch.ones(n_mels))
            layers: list[nn.Module] = []
            previous = 1
            for c in channels:
                layers += [nn.Conv2d(previous, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
                previous = c
            self.cnn = nn.Sequential(*layers)
            bands = n_mels // 2 ** len(channels)
            self.gru = nn.GRU(previous * bands, hidden, batch_first=True)
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, 1))

        def forward(self, x):
            x = (x - self.band_mean[:, None]) / self.band_std[:, None]
            x = nn.functional.avg_pool1d(x, self.pool)
            x = self.cnn(x[:, None])  # (batch, channels, bands, steps)
            x = x.flatten(1, 2).transpose(1, 2)  # (batch, steps, channels × bands)
            out, last = self.gru(x)
            summary = torch.cat([out.mean(dim=1), last[-1]], dim=1)  # the whole chorus and how it ends
            return torch.sigmoid(self.head(summary)).squeeze(1)

    return HitModel


def __getattr__(name: str):
    # `from ml.audio import HitModel` works, yet importing this module does not import torch.
    if name == "HitModel":
        return _hit_model_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _ranking_metrics(truth: np.ndarray, predicted: np.ndarray, hits: np.ndarray) -> dict[str, float | None]:
    """MAE and Spearman of predicted against true ranks; AUC of the predictions for the `hits` (top quartile)."""
    from scipy.stats import rankdata, spearmanr

    mae = float(np.mean(np.abs(truth - predicted)))
    rho = spearmanr(truth, predicted).statistic if np.ptp(predicted) > 0 and np.ptp(truth) > 0 else float("nan")
    auc = None
    if 0 < hits.sum() < len(hits):
        ranks = rankdata(predicted)  # Mann–Whitney: the chance a top-quartile track outranks another
        auc = float((ranks[hits].sum() - hits.sum() * (hits.sum() + 1) / 2) / (hits.sum() * (~hits).sum()))
    return {"mae": round(mae, 4), "spearman": None if math.isnan(rho) else round(float(rho), 4),
            "auc_top_quartile": None if auc is None else round(auc, 4)}


def _split(n: int, test_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_test = min(n - 2, max(2, int(round(n * test_share))))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def train_hit_model(spectrograms: np.ndarray | Sequence[np.ndarray], targets: Sequence[float], *,
                    descriptors: np.ndarray | Sequence[dict] | None = None, epochs: int = 30, seed: int = 0,
                    test_share: float = 0.2, batch_size: int = 16, learning_rate: float = 2e-3, threads: int = 1,
                    progress: Progress | None = None) -> tuple[bytes, dict]:
    """Learn the hit model from chorus spectrograms and each track's engagement; (artefact bytes, report).

    spectrograms: (n, n_mels, frames) from `log_mel`; targets: any engagement measure where more is
    better (e.g. the repeat-listen share of early plays). The model learns each target's percentile
    rank among the training tracks. A seeded random `test_share` of tracks is held out; the report
    gives n_train, n_test, the held-out mae (in rank units), spearman and auc_top_quartile (tracks in
    the training set's top quartile of engagement against the rest), a per-epoch history, and the same
    figures for the baseline: a ridge regression on `descriptors` (dicts from `descriptors()` or a
    matrix), or the training mean when none are given. The artefact is the model trained on the
    training split — the one the figures describe.
    """
    import torch

    report_progress = progress or (lambda fraction, message: None)
    x = np.asarray(spectrograms, dtype=np.float32)
    y = np.asarray(targets, dtype=np.float64)
    if x.ndim != 3 or len(x) != len(y):
        raise ValueError(f"need spectrograms (n, n_mels, frames) and one target each, got {x.shape} and {y.shape}")
    if len(y) < 10 or not np.all(np.isfinite(y)):
        raise ValueError("need at least 10 tracks with a finite engagement figure each")
    started = time.perf_counter()
    train, test = _split(len(y), test_share, seed)
    ranks_train = _percentile_ranks(y[train], y[train])
    ranks_test = _percentile_ranks(y[train], y[test])
    hits = y[test] >= np.quantile(y[train], 0.75)  # in the catalogue's top quartile of engagement

    threads_before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    try:
        model = _hit_model_class()(n_mels=x.shape[1])
        model.band_mean.copy_(torch.from_numpy(x[train].mean(axis=(0, 2))))
        model.band_std.copy_(torch.from_numpy(np.maximum(x[train].std(axis=(0, 2)), 1e-3)))
        optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-3)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=learning_rate, total_steps=max(1, epochs) *
                                                       math.ceil(len(train) / batch_size))
        inputs = torch.from_numpy(x)
        goal = torch.from_numpy(ranks_train.astype(np.float32))
        frames = x.shape[2]
        crop = max(model.pool * 8, int(frames * 0.8) // (model.pool * 8) * (model.pool * 8))
        history = []
        for epoch in range(epochs):
            model.train()
            order = generator.permutation(len(train))
            total = 0.0
            for first in range(0, len(order), batch_size):
                rows = order[first:first + batch_size]
                at = int(generator.integers(0, frames - crop + 1))  # a random 24 s of the 30 s: cheap augmentation
                batch = inputs[train[rows], :, at:at + crop]
                loss = torch.nn.functional.mse_loss(model(batch), goal[rows])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                total += loss.item() * len(rows)
            predicted = _predict_many(model, x[test])
            history.append({"epoch": epoch + 1, "train_mse": round(total / len(train), 5),
                            "test_mae": round(float(np.mean(np.abs(predicted - ranks_test))), 4)})
            report_progress((epoch + 1) / max(1, epochs), f"Epoch {epoch + 1} of {epochs}")
        predicted = _predict_many(model, x[test]) if epochs else np.full(len(test), 0.5)
    finally:
        torch.set_num_threads(threads_before)

    report: dict[str, Any] = {
        "target": "percentile rank of engagement among the training tracks",
        "n_train": int(len(train)), "n_test": int(len(test)), "epochs": epochs, "seed": seed,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        **_ranking_metrics(ranks_test, predicted, hits),
        "history": history,
    }
    report["baseline"] = _baseline(descriptors, train, test, ranks_train, ranks_test, hits)
    report["seconds"] = round(time.perf_counter() - started, 1)
    buffer = io.BytesIO()
    torch.save({"format": "encore-hit-model/1", "config": model.config, "state": model.state_dict()}, buffer)
    return buffer.getvalue(), report


def _baseline(descriptors, train, test, ranks_train, ranks_test, hits) -> dict:
    if descriptors is None:
        return {"kind": "the training mean", **_ranking_metrics(ranks_test, np.full(len(test), ranks_train.mean()), hits)}
    matrix = np.asarray([descriptor_vector(d) for d in descriptors] if isinstance(descriptors[0], dict) else descriptors,
                        dtype=np.float64)
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ridge = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(matrix[train], ranks_train)
    predicted = np.clip(ridge.predict(matrix[test]), 0.0, 1.0)
    return {"kind": "ridge regression on the descriptors", **_ranking_metrics(ranks_test, predicted, hits)}


def _predict_many(model, spectrograms: np.ndarray, batch_size: int = 32) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for first in range(0, len(spectrograms), batch_size):
            out.append(model(torch.from_numpy(np.ascontiguousarray(spectrograms[first:first + batch_size]))).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def load_hit_model(data: bytes):
    """A HitModel from `train_hit_model`'s bytes, ready to predict (weights only: no pickle is executed)."""
    import torch

    try:
        saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch reports a truncated zip, a foreign pickle … each its own way
        raise ValueError(f"not a hit model artefact ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from exc
    if not isinstance(saved, dict) or saved.get("format") != "encore-hit-model/1":
        raise ValueError("not a hit model artefact")
    config = dict(saved["config"])
    config["channels"] = tuple(config["channels"])
    model = _hit_model_class()(**config)
    model.load_state_dict(saved["state"])
    model.eval()
    return model


def predict_hit(model, spectrogram: np.ndarray) -> float:
    """Hit score in [0, 1] for one (n_mels, frames) log-mel: the expected engagement percentile."""
    return round(float(_predict_many(model, np.asarray(spectrogram, dtype=np.float32)[None])[0]), 4)


# --------------------------------------------------------------------------------------------- tagging


def tag_features(spectrogram: np.ndarray, values: dict[str, Any]) -> np.ndarray:
    """The tagger's input: the numeric descriptors, then each mel band's mean and spread over the audible frames."""
    spec = np.asarray(spectrogram, dtype=np.float64)
    audible = spec.max(axis=0) > FLOOR_DB  # padding frames of a short clip say nothing about its sound
    spec = spec[:, audible] if audible.any() else spec
    return np.concatenate([descriptor_vector(values), spec.mean(axis=1), spec.std(axis=1)])


@dataclass
class Tagger:
    """Standardisation and one multinomial logistic regression per question, as plain arrays."""

    mean: np.ndarray
    scale: np.ndarray
    heads: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # question → (classes, coef, intercept)

    def probabilities(self, features: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        z = (np.atleast_2d(np.asarray(features, dtype=np.float64)) - self.mean) / self.scale
        out = {}
        for question, (classes, coef, intercept) in self.heads.items():
            logits = z @ coef.T + intercept
            if coef.shape[0] == 1:  # scikit-learn keeps one row for two classes
                logits = np.hstack([-logits, logits]) / 2
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            out[question] = (classes, p / p.sum(axis=1, keepdims=True))
        return out

    def to_bytes(self) -> bytes:
        arrays = {"mean": self.mean, "scale": self.scale}
        for question, (classes, coef, intercept) in self.heads.items():
            arrays |= {f"{question}.classes": classes.astype(str), f"{question}.coef": coef, f"{question}.intercept": intercept}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()


def load_tagger(data: bytes) -> Tagger:
    """A Tagger from `train_tagger`'s bytes (npz of arrays, loaded without pickle)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        questions = sorted({k.split(".")[0] for k in arrays.files if "." in k})
        heads = {q: (arrays[f"{q}.classes"], arrays[f"{q}.coef"], arrays[f"{q}.intercept"]) for q in questions}
        return Tagger(arrays["mean"], arrays["scale"], heads)


def train_tagger(features: np.ndarray, labels: dict[str, Sequence[str]], *, seed: int = 0, test_share: float = 0.2,
                 progress: Progress | None = None) -> tuple[bytes, dict]:
    """Learn genre / mood (any named questions) from `tag_features` rows; (artefact bytes, report).

    labels: {"genre": [...], "mood": [...]}, one label per row. Each question's held-out accuracy
    (a seeded random `test_share` of rows), the majority-class accuracy it should beat, its classes
    and confusion matrix (rows: truth, columns: predicted) are reported; the artefact is then refitted
    on every row (logistic regression is cheap, and more examples of each genre help).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    report_progress = progress or (lambda fraction, message: None)
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or not labels:
        raise ValueError("need a feature matrix and at least one labelled question")
    train, test = _split(len(x), test_share, seed)
    report: dict[str, Any] = {"n_train": int(len(train)), "n_test": int(len(test))}
    heads = {}
    scaler = StandardScaler().fit(x)
    for i, (question, values) in enumerate(labels.items()):
        y = np.asarray(values, dtype=str)
        if len(y) != len(x):
            raise ValueError(f"{question}: {len(y)} labels for {len(x)} rows")
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"{question}: need at least two different labels, got {list(classes)}")
        held = StandardScaler().fit(x[train])

        def logistic():
            return LogisticRegression(C=0.5, max_iter=3000)

        trained_classes = np.unique(y[train])
        if len(trained_classes) >= 2:
            model = logistic().fit(held.transform(x[train]), y[train])
            predicted = model.predict(held.transform(x[test]))
            accuracy = float(np.mean(predicted == y[test]))
        else:
            predicted, accuracy = np.full(len(test), trained_classes[0]), float(np.mean(y[test] == trained_classes[0]))
        majority = max(classes, key=lambda c: int(np.sum(y[train] == c)))
        index = {c: k for k, c in enumerate(classes)}
        confusion = np.zeros((len(classes), len(classes)), dtype=int)
        for truth, guess in zip(y[test], predicted):
            confusion[index[truth], index[guess]] += 1
        report[question] = {"accuracy": round(accuracy, 4), "majority_accuracy": round(float(np.mean(y[test] == majority)), 4),
                            "classes": classes.tolist(), "confusion": confusion.tolist()}
        final = logistic().fit(scaler.transform(x), y)
        heads[question] = (final.classes_.astype(str), final.coef_, final.intercept_)
        report_progress((i + 1) / len(labels), f"Trained the {question} tagger")
    tagger = Tagger(scaler.mean_, np.where(scaler.scale_ > 0, scaler.scale_, 1.0), heads)
    return tagger.to_bytes(), report


def predict_tags(tagger: Tagger, features: np.ndarray, *, top: int = 3) -> dict[str, list[tuple[str, float]]]:
    """{"genre": [(label, probability), …], "mood": […]}: the `top` most likely labels per question, best first."""
    tags = {}
    for question, (classes, p) in tagger.probabilities(features).items():
        order = np.argsort(-p[0])[:top]
        tags[question] = [(str(classes[k]), round(float(p[0, k]), 4)) for k in order]
    return tags


# --------------------------------------------------------------------------------------------- the job


def heatmap(spectrogram: np.ndarray, *, bands: int = 32, seconds_per_column: float = 0.25, sr: int = SR,
            hop: int = HOP) -> dict[str, Any]:
    """A small copy of the log-mel for the item page's heat map: whole dB, `bands` rows, one column per 0.25 s."""
    spec = np.asarray(spectrogram, dtype=np.float64)
    group = max(1, spec.shape[0] // bands)
    spec = spec[: group * bands].reshape(bands, group, -1).mean(axis=1)
    step = max(1, int(round(seconds_per_column * sr / hop)))
    columns = spec.shape[1] // step
    spec = spec[:, : columns * step].reshape(bands, columns, step).mean(axis=2)
    return {"db": np.round(spec).astype(int).tolist(), "bands": bands, "seconds_per_column": round(step * hop / sr, 4),
            "low_db": int(np.floor(spec.min())), "high_db": int(np.ceil(spec.max())), "lowest_band_first": True}


def analyse_signal(y: np.ndarray, sr: int, *, name: str = "", offset: float | None = None, hit_model=None,
                   tagger: Tagger | None = None, length: float = CHORUS_SECONDS) -> tuple[dict[str, Any], np.ndarray]:
    """`analyse` on decoded samples: (the JSON result, the chorus log-mel the models read)."""
    check_recording(y, sr, name=name)
    power = _power(y)
    chorus = _chorus(y, sr, length=length, offset=offset, name=name, power=power)
    segment = y[int(chorus.start * sr): int((chorus.start + length) * sr)]
    spectrogram = log_mel(segment, sr, seconds=length)
    values = descriptors(y, sr, power=power)
    notes = []
    if chorus.chosen_by == "whole":
        notes.append(f"The recording is {len(y) / sr:.1f} s long, shorter than {length:.0f} s: it was analysed whole, "
                     "and the spectrogram is padded with silence.")
    result: dict[str, Any] = {
        "name": name,
        "duration_s": round(len(y) / sr, 2),
        "sample_rate": sr,
        "chorus": {"start_s": chorus.start, "end_s": round(min(chorus.start + length, len(y) / sr), 2), "why": chorus.why,
                   "chosen_by": chorus.chosen_by, "repeats": chorus.repeats, "energy_top_percent": chorus.energy_top_percent},
        "used_whole": chorus.chosen_by == "whole",
        "descriptors": values,
        "spectrogram": heatmap(spectrogram, sr=sr),
        "hit_score": predict_hit(hit_model, spectrogram) if hit_model is not None else None,
        "tags": predict_tags(tagger, tag_features(spectrogram, values)) if tagger is not None else None,
        "notes": notes,
    }
    return result, spectrogram


def analyse(source: Source, *, name: str = "", offset: float | None = None, hit_model=None,
            tagger: Tagger | None = None) -> dict[str, Any]:
    """The whole audio job for one upload: decode → chorus → log-mel → descriptors → hit score and tags.

    Returns plain JSON: name, duration_s, sample_rate, chorus {start_s, end_s, why, chosen_by
    ("finder" | "operator" | "whole"), repeats, energy_top_percent}, used_whole, descriptors (see
    `descriptors`), spectrogram (`heatmap` of the chorus), hit_score (None without a model), tags
    ({"genre": [(label, p), …], "mood": […]} or None) and notes. Raises AudioError for an
    undecodable, too short or silent recording, or an offset beyond its end.
    """
    label = _label(source, name)
    y, sr = decode(source, name=label)
    result, _ = analyse_signal(y, sr, name=label, offset=offset, hit_model=hit_model, tagger=tagger)
    return result
