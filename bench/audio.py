"""Audio jobs (issue 8): the chorus finder, the hit model and the tagger on synthetic tracks; the real clips.

    .venv/bin/python bench/audio.py     # ../shared/data (or ENCORE_SHARED_DATA); ~3–4 min on 2 cores

Synthetic catalogue: `ml.audio_synth.catalogue_truth(360, seed=2024)` draws 360 tracks' genre (six
sound families), mood (five), tempo, energy and catchiness, and their true repeat-listen share (a
noisy logistic function of catchiness, energy and a tempo sweet spot near 122 bpm; genre and mood do
not enter it). Each is synthesised as 60 s at 22,050 Hz and analysed exactly as an upload is
(`ml.audio.analyse_signal`: chorus → 30 s log-mel → descriptors). Then:

- `train_hit_model` (its defaults, set before this bench first ran: 30 epochs, seed 0, 20 % held out,
  one torch thread) learns the repeat share's percentile rank from the chorus spectrograms;
  `hit_spearman`, `hit_mae` (rank units) and `hit_auc_top_quartile` (top quartile of engagement
  against the rest) are on the 72 held-out tracks; `baseline_spearman` / `baseline_auc_top_quartile`
  are a ridge regression on the descriptors on the same split; `truth_spearman_ceiling` is the
  Spearman correlation of the noise-free hit potential with the repeat share over all tracks — what
  a model that heard catchiness, energy and tempo perfectly would reach. `train_seconds` includes
  the held-out evaluation after every epoch; `hit_model_bytes` is the artefact's size.
- `train_tagger` on `tag_features` (descriptors + each mel band's mean and spread):
  `tagger_genre_accuracy` and `tagger_mood_accuracy` on a held-out 20 %, against the majority
  class (`_majority`); `tagger_bytes` is the artefact's size.
- The chorus finder against the synthesiser's own plan (`song_sections`): `chorus_overlap_found` is
  the mean share of the chosen 30 s that lies in a true chorus, `chorus_overlap_random` the same for
  a window placed uniformly at random, `chorus_overlap_best` for the best window per track.
- `synth_seconds_per_track` and `analyse_seconds_per_track` (chorus + log-mel + descriptors; the
  bench's clips are already decoded, so decoding is not included).

Real clips (../shared/data/librosa-music-clips, five CC BY / public-domain recordings from librosa's
example data): each is decoded and analysed; printed per clip: chorus start, tempo, integrated
loudness and key — or the AudioError an operator would see (the 5.3 s trumpet loop is too short).
Known references: the librosa tutorial beat-tracks the Sugar Plum Fairy at 107.7 bpm; the trumpet
loop is labelled 90 bpm; the Brahms is played here in G minor (the orchestral arrangement's key).

BENCH_AUDIO_TRACKS and BENCH_AUDIO_EPOCHS override the track count and epochs for a quick look.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("ENCORE_SHARED_DATA") or ROOT.parent / "shared" / "data")
TRACKS = int(os.environ.get("BENCH_AUDIO_TRACKS", "360"))
EPOCHS = int(os.environ.get("BENCH_AUDIO_EPOCHS", "30"))
SEED = 2024


def show(name: str, value) -> None:
    print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}", flush=True)


def overlap(start: float, length: float, sections: list[tuple[str, float, float]]) -> float:
    """Share of [start, start + length) that lies in a chorus section."""
    inside = sum(max(0.0, min(end, start + length) - max(begin, start)) for kind, begin, end in sections if kind == "chorus")
    return inside / length


def synthetic() -> None:
    from scipy.stats import spearmanr

    from ml import audio
    from ml.audio_synth import SR, catalogue_truth, song_sections, synthesize

    truth = catalogue_truth(TRACKS, seed=SEED)
    spectrograms, values, features = [], [], []
    found, random_window, best = [], [], []
    synth_seconds = analyse_seconds = 0.0
    for i, track in enumerate(truth):
        started = time.perf_counter()
        y = synthesize(track["seed"], genre=track["genre"], mood=track["mood"], tempo=track["tempo"],
                       energy=track["energy"], catchiness=track["catchiness"])
        synth_seconds += time.perf_counter() - started
        started = time.perf_counter()
        result, spectrogram = audio.analyse_signal(y, SR, name=f"synthetic track {i}")
        analyse_seconds += time.perf_counter() - started
        spectrograms.append(spectrogram)
        values.append(result["descriptors"])
        features.append(audio.tag_features(spectrogram, result["descriptors"]))
        sections = song_sections(tempo=track["tempo"], catchiness=track["catchiness"])
        duration = result["duration_s"]
        starts = np.arange(0.0, duration - 30.0 + 1e-9, 0.25)
        shares = [overlap(s, 30.0, sections) for s in starts]
        found.append(overlap(result["chorus"]["start_s"], 30.0, sections))
        random_window.append(float(np.mean(shares)))
        best.append(max(shares))
        if (i + 1) % 60 == 0:
            print(f"# analysed {i + 1} of {len(truth)}", file=sys.stderr, flush=True)
    show("tracks", len(truth))
    show("synth_seconds_per_track", synth_seconds / len(truth))
    show("analyse_seconds_per_track", analyse_seconds / len(truth))
    show("chorus_overlap_found", float(np.mean(found)))
    show("chorus_overlap_random", float(np.mean(random_window)))
    show("chorus_overlap_best", float(np.mean(best)))

    share = np.array([t["repeat_share"] for t in truth])
    show("truth_spearman_ceiling", float(spearmanr([t["hit_potential"] for t in truth], share).statistic))
    started = time.perf_counter()
    artefact, report = audio.train_hit_model(np.stack(spectrograms), share, descriptors=values, epochs=EPOCHS, seed=0)
    show("train_seconds", time.perf_counter() - started)
    show("hit_n_test", report["n_test"])
    show("hit_parameters", report["parameters"])
    show("hit_spearman", report["spearman"])
    show("hit_mae", report["mae"])
    show("hit_auc_top_quartile", report["auc_top_quartile"])
    show("baseline_spearman", report["baseline"]["spearman"])
    show("baseline_mae", report["baseline"]["mae"])
    show("baseline_auc_top_quartile", report["baseline"]["auc_top_quartile"])
    show("hit_model_bytes", len(artefact))
    model = audio.load_hit_model(artefact)
    started = time.perf_counter()
    for spectrogram in spectrograms[:20]:
        audio.predict_hit(model, spectrogram)
    show("predict_seconds_per_track", (time.perf_counter() - started) / 20)

    tagger_bytes, tags = audio.train_tagger(np.stack(features), {"genre": [t["genre"] for t in truth],
                                                                 "mood": [t["mood"] for t in truth]})
    for question in ("genre", "mood"):
        show(f"tagger_{question}_accuracy", tags[question]["accuracy"])
        show(f"tagger_{question}_majority", tags[question]["majority_accuracy"])
    show("tagger_bytes", len(tagger_bytes))


def real_clips() -> None:
    from ml import audio

    folder = DATA / "librosa-music-clips"
    if not folder.is_dir():
        sys.exit(f"{folder} not found (set ENCORE_SHARED_DATA to the folder of the shared data sets)")
    for path in sorted(folder.glob("*.ogg")):
        clip = path.stem.split("_-_")[-1][:24].strip("_").lower()
        try:
            started = time.perf_counter()
            result = audio.analyse(path)
            elapsed = time.perf_counter() - started
        except audio.AudioError as error:
            show(f"clip_{clip}_error", str(error))
            continue
        d = result["descriptors"]
        show(f"clip_{clip}_duration_s", d["duration_s"])
        show(f"clip_{clip}_chorus_start_s", float(result["chorus"]["start_s"]))
        show(f"clip_{clip}_chorus_why", result["chorus"]["why"])
        show(f"clip_{clip}_tempo_bpm", float(d["tempo_bpm"]))
        show(f"clip_{clip}_loudness_lufs", float(d["loudness_lufs"]))
        show(f"clip_{clip}_key", d["key"])
        show(f"clip_{clip}_analyse_seconds", elapsed)


def main() -> None:
    started = time.perf_counter()
    real_clips()
    synthetic()
    show("total_seconds", time.perf_counter() - started)


if __name__ == "__main__":
    main()
