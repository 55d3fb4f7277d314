"""The audio jobs' pure part: decoding, the chorus finder, descriptors, the hit model, the tagger, the synthesiser."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ml import audio
from ml.audio_synth import GENRES, MOOD_NAMES, catalogue_truth, song_sections, sound_of, synthesize

SR = 22050
ROOT = Path(__file__).resolve().parents[2]
CLIPS = Path(os.environ.get("ENCORE_SHARED_DATA") or ROOT.parent / "shared" / "data") / "librosa-music-clips"
# Durations from the data set's README.
CLIP_SECONDS = {
    "Kevin_MacLeod_-_Vibe_Ace.ogg": 61.5,
    "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg": 119.9,
    "Karissa_Hobbs_-_Lets_Go_Fishin.ogg": 133.0,
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_string_orchestra.ogg": 45.8,
    "sorohanro_-_solo-trumpet-06.ogg": 5.3,
}
needs_clips = pytest.mark.skipif(not CLIPS.is_dir(), reason=f"{CLIPS} not found (set ENCORE_SHARED_DATA)")


def tones(rng: np.random.Generator, seconds: float, amplitude: float, step: float = 0.5) -> np.ndarray:
    """A random melody of decaying sine notes, one every `step` seconds."""
    out = np.zeros(int(seconds * SR), dtype=np.float32)
    t = np.arange(int(step * SR)) / SR
    for i in range(int(seconds / step)):
        f = 220.0 * 2 ** (int(rng.integers(0, 24)) / 12)
        out[i * len(t):(i + 1) * len(t)] += (amplitude * np.sin(2 * np.pi * f * t) * np.exp(-t / 0.3)).astype(np.float32)
    return out


def clicks(bpm: float, seconds: float = 60.0, amplitude: float = 1.0) -> np.ndarray:
    """A metronome: a 1 kHz blip (18 ms) on every beat."""
    y = np.zeros(int(seconds * SR), dtype=np.float32)
    n = np.arange(400)
    blip = (amplitude * np.exp(-n / 60) * np.sin(2 * np.pi * 1000 * n / SR)).astype(np.float32)
    for at in np.arange(0.0, seconds, 60.0 / bpm):
        i = int(round(at * SR))
        y[i:i + 400] += blip[: len(y[i:i + 400])]
    return y


@pytest.fixture(scope="module")
def loud_repeat() -> np.ndarray:
    """90 s of quiet random notes over noise, with the same loud 30 s motif at 20 s and at 60 s."""
    rng = np.random.default_rng(0)
    y = tones(rng, 90, 0.05) + rng.normal(0, 0.01, 90 * SR).astype(np.float32)
    motif = tones(np.random.default_rng(42), 30, 0.6, step=0.25)
    for start in (20, 60):
        y[start * SR:(start + 30) * SR] += motif
    return y


# -- decoding ---------------------------------------------------------------------------------------------


@needs_clips
def test_every_real_clip_decodes_to_mono_float32_at_22050_hz():
    for name, seconds in CLIP_SECONDS.items():
        y, sr = audio.decode(CLIPS / name)
        assert sr == SR and y.dtype == np.float32 and y.ndim == 1
        assert abs(len(y) / sr - seconds) < 0.1, name
        assert 0.01 < np.max(np.abs(y)) <= 1.0


@pytest.mark.parametrize("fmt, lossless", [("WAV", True), ("FLAC", True), ("OGG", False), ("MP3", False)])
def test_a_file_written_by_soundfile_round_trips(fmt, lossless):
    rng = np.random.default_rng(1)
    y = (tones(rng, 12, 0.4) + rng.normal(0, 0.01, 12 * SR)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, y, SR, format=fmt)
    decoded, sr = audio.decode(buffer.getvalue(), name=f"song.{fmt.lower()}")
    assert sr == SR and decoded.dtype == np.float32
    assert abs(len(decoded) - len(y)) / SR < 0.2  # mp3 frames pad the end a little
    if lossless:
        assert np.max(np.abs(decoded - y)) < 1e-3  # 16-bit PCM
    else:
        level = 10 * np.log10(np.mean(decoded**2) / np.mean(y**2))
        assert abs(level) < 1.0


def test_stereo_at_44100_hz_is_averaged_to_mono_and_resampled(tmp_path):
    t = np.arange(11 * 44100) / 44100
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.column_stack([left, right]), 44100)
    with open(path, "rb") as f:  # an open file, as Django hands over an upload
        y, sr = audio.decode(f)
    assert sr == SR and abs(len(y) - 11 * SR) <= 2
    assert abs(np.sqrt(np.mean(y**2)) - 0.5 / np.sqrt(2)) < 0.01


def test_garbage_bytes_are_reported_as_undecodable():
    with pytest.raises(audio.AudioError, match=r"could not decode junk\.mp3: not a wav, ogg, flac or mp3 file \("):
        audio.decode(b"this is not audio at all" * 100, name="junk.mp3")


def test_an_empty_file_is_reported_as_undecodable():
    with pytest.raises(audio.AudioError, match=r"could not decode empty\.wav: .*the file is empty"):
        audio.decode(b"", name="empty.wav")


def test_a_five_second_clip_is_too_short_and_the_error_names_its_length():
    buffer = io.BytesIO()
    soundfile.write(buffer, tones(np.random.default_rng(2), 5, 0.5), SR, format="WAV")
    with pytest.raises(audio.AudioError, match=r"short\.wav is too short: 5\.0 s of audio, at least 10 s are needed"):
        audio.analyse(buffer.getvalue(), name="short.wav")


@needs_clips
def test_the_real_five_second_trumpet_loop_is_too_short():
    with pytest.raises(audio.AudioError, match=r"5\.3 s of audio"):
        audio.analyse(CLIPS / "sorohanro_-_solo-trumpet-06.ogg")


def test_a_recording_over_20_minutes_is_refused():
    with pytest.raises(audio.AudioError, match=r"mix\.wav is too long: 20\.2 min of audio, at most 20 min"):
        audio.check_recording(np.full(121_000, 0.1, dtype=np.float32), 100, name="mix.wav")  # 100 samples a second


def test_a_silent_recording_is_refused():
    with pytest.raises(audio.AudioError, match="silent"):
        audio.analyse_signal(np.zeros(20 * SR, dtype=np.float32), SR, name="silence.wav")


# -- chorus and spectrogram -------------------------------------------------------------------------------


def test_the_chorus_finder_finds_the_loud_repeated_section(loud_repeat):
    start, why = audio.find_chorus(loud_repeat, SR)
    assert min(abs(start - 20.0), abs(start - 60.0)) <= 2.0, (start, why)
    assert "heard 2×" in why


def test_the_operators_offset_is_honoured_and_kept_inside_the_recording(loud_repeat):
    assert audio.find_chorus(loud_repeat, SR, offset=42.0) == (42.0, "the operator's offset 42.0 s")
    start, why = audio.find_chorus(loud_repeat, SR, offset=75.0)
    assert start == 60.0 and "moved to 60.0 s" in why
    with pytest.raises(audio.AudioError, match=r"offset 95\.0 s lies beyond the end of song\.wav \(90\.0 s\)"):
        audio.find_chorus(loud_repeat, SR, offset=95.0, name="song.wav")


def test_a_clip_between_10_and_30_seconds_is_used_whole_and_the_result_says_so():
    y = tones(np.random.default_rng(3), 15, 0.5)
    result, spectrogram = audio.analyse_signal(y, SR, name="demo.wav")
    assert result["used_whole"] and result["chorus"]["chosen_by"] == "whole" and result["chorus"]["start_s"] == 0.0
    assert "used whole" in result["chorus"]["why"] and "15.0 s" in result["notes"][0]
    assert spectrogram.shape == (64, 1292)
    assert np.all(spectrogram[:, -100:] == audio.FLOOR_DB)  # padded with silence


def test_log_mel_of_30_seconds_has_64_bands_and_1292_frames_in_absolute_db():
    y = tones(np.random.default_rng(4), 40, 0.5)
    spectrogram = audio.log_mel(y, SR)
    assert spectrogram.shape == (64, 1292) == (audio.N_MELS, audio.frames_for(30.0)) and spectrogram.dtype == np.float32
    assert spectrogram.min() >= audio.FLOOR_DB and spectrogram.max() < 10
    quieter = audio.log_mel(y * 0.5, SR)
    loud = spectrogram > -60
    assert np.allclose((quieter - spectrogram)[loud], -6.02, atol=0.05)


# -- descriptors ------------------------------------------------------------------------------------------


def test_the_tempo_of_a_120_bpm_click_track_is_120():
    # Not its octave: librosa's prior centred on 120 bpm picks 120, and the refinement keeps the decimals honest.
    assert audio.descriptors(clicks(120), SR)["tempo_bpm"] == pytest.approx(120, abs=2)


def test_loudness_drops_by_6_db_when_the_amplitude_halves():
    y = tones(np.random.default_rng(5), 20, 0.8)
    full, half = audio.descriptors(y, SR), audio.descriptors(y * 0.5, SR)
    assert half["loudness_dbfs"] - full["loudness_dbfs"] == pytest.approx(-6.02, abs=0.05)
    assert half["loudness_lufs"] - full["loudness_lufs"] == pytest.approx(-6.02, abs=0.05)


def test_a_full_scale_997_hz_sine_measures_minus_3_lufs():
    # The BS.1770 calibration: K-weighting adds ~0.69 dB at 997 Hz, which the −0.691 offset takes back.
    sine = np.sin(2 * np.pi * 997 * np.arange(20 * SR) / SR).astype(np.float32)
    integrated, loudness_range = audio.loudness(sine, SR)
    assert integrated == pytest.approx(-3.01, abs=0.1) and loudness_range == pytest.approx(0.0, abs=0.1)


def test_descriptors_are_plain_json_with_every_feature_the_models_read():
    values = audio.descriptors(clicks(100, seconds=12), SR)
    json.dumps(values)
    assert set(audio.DESCRIPTOR_FEATURES) <= set(values) and values["duration_s"] == 12.0
    assert audio.descriptor_vector(values).shape == (len(audio.DESCRIPTOR_FEATURES),)


@needs_clips
def test_a_real_clip_is_analysed_into_json():
    result = audio.analyse(CLIPS / "Kevin_MacLeod_-_Vibe_Ace.ogg")
    json.dumps(result)
    assert result["name"] == "Kevin_MacLeod_-_Vibe_Ace.ogg" and result["chorus"]["chosen_by"] == "finder"
    assert 0 <= result["chorus"]["start_s"] <= result["duration_s"] - 30
    assert result["descriptors"]["tempo_bpm"] == pytest.approx(129.2, abs=2)  # librosa's own estimate for this clip
    heat = result["spectrogram"]
    assert heat["bands"] == len(heat["db"]) == 32 and len(heat["db"][0]) == 117
    assert result["hit_score"] is None and result["tags"] is None


# -- models -----------------------------------------------------------------------------------------------


def test_the_hit_model_trains_for_an_epoch_and_predicts_scores_in_0_1():
    rng = np.random.default_rng(6)
    spectrograms = rng.normal(-50, 15, (12, 64, 1292)).astype(np.float32)
    engagement = rng.uniform(0.05, 0.5, 12)
    values = [{k: float(rng.normal()) for k in audio.DESCRIPTOR_FEATURES} for _ in range(12)]
    artefact, report = audio.train_hit_model(spectrograms, engagement, descriptors=values, epochs=1, seed=0, batch_size=4)
    assert report["n_train"] + report["n_test"] == 12 and len(report["history"]) == 1
    assert {"mae", "spearman", "auc_top_quartile", "baseline"} <= set(report)
    assert report["baseline"]["kind"] == "ridge regression on the descriptors"
    model = audio.load_hit_model(artefact)
    assert isinstance(model, audio.HitModel)
    score = audio.predict_hit(model, spectrograms[0])
    assert 0.0 <= score <= 1.0
    import torch

    with torch.no_grad():
        assert model(torch.from_numpy(spectrograms[:3])).shape == (3,)


def test_a_corrupt_hit_model_artefact_is_refused():
    with pytest.raises(ValueError, match="not a hit model artefact"):
        audio.load_hit_model(b"not a model")


@pytest.fixture(scope="module")
def two_genres():
    """Twelve 12 s synthetic tracks each of classical and rock: (tag features, genre labels, mood labels)."""
    rng = np.random.default_rng(7)
    rows, genres, moods = [], [], []
    for i in range(24):
        genre, mood = ("classical", "calm") if i % 2 else ("rock", "energetic")
        y = synthesize(i, genre=genre, mood=mood, tempo=float(rng.uniform(90, 130)), energy=float(rng.uniform(0.2, 0.8)),
                       catchiness=float(rng.uniform()), duration=12.0)
        result, spectrogram = audio.analyse_signal(y, SR)
        rows.append(audio.tag_features(spectrogram, result["descriptors"]))
        genres.append(genre)
        moods.append(mood)
    return np.stack(rows), genres, moods


def test_the_tagger_tells_two_synthetic_genres_apart_better_than_chance(two_genres):
    features, genres, moods = two_genres
    artefact, report = audio.train_tagger(features, {"genre": genres, "mood": moods}, test_share=0.25, seed=0)
    assert report["genre"]["accuracy"] > 0.5 and report["genre"]["accuracy"] >= report["genre"]["majority_accuracy"]
    assert report["genre"]["classes"] == ["classical", "rock"] and sum(map(sum, report["genre"]["confusion"])) == 6
    tagger = audio.load_tagger(artefact)
    tags = audio.predict_tags(tagger, features[1])
    assert tags["genre"][0][0] == "classical" and tags["mood"][0][0] == "calm"
    assert sum(p for _, p in tags["genre"]) == pytest.approx(1.0, abs=1e-3)


def test_analyse_adds_the_hit_score_and_tags_when_models_are_given(two_genres):
    features, genres, moods = two_genres
    tagger = audio.load_tagger(audio.train_tagger(features, {"genre": genres, "mood": moods})[0])
    rng = np.random.default_rng(8)
    spectrograms = rng.normal(-50, 15, (10, 64, 1292)).astype(np.float32)
    model = audio.load_hit_model(audio.train_hit_model(spectrograms, rng.uniform(size=10), epochs=1)[0])
    buffer = io.BytesIO()
    soundfile.write(buffer, synthesize(99, genre="rock", mood="energetic", tempo=128, energy=0.8, catchiness=0.9,
                                       duration=40.0), SR, format="FLAC")
    result = audio.analyse(buffer.getvalue(), name="single.flac", hit_model=model, tagger=tagger)
    json.dumps(result)
    assert 0.0 <= result["hit_score"] <= 1.0
    assert {q for q in result["tags"]} == {"genre", "mood"} and result["tags"]["genre"][0][0] == "rock"


def test_importing_the_audio_module_loads_neither_torch_nor_librosa():
    code = "import sys, ml.audio, ml.audio_synth; print(sorted(m for m in ('torch', 'librosa', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- the synthesiser --------------------------------------------------------------------------------------


def test_synthesize_is_deterministic_per_seed():
    kwargs = dict(genre="pop", mood="happy", tempo=118.0, energy=0.6, catchiness=0.7, duration=15.0)
    a, b, c = synthesize(5, **kwargs), synthesize(5, **kwargs), synthesize(6, **kwargs)
    assert a.dtype == np.float32 and len(a) == 15 * SR and np.max(np.abs(a)) <= 1.0
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_synthesized_genres_sound_different():
    def centroid(genre):
        y = synthesize(1, genre=genre, mood="happy", tempo=110.0, energy=0.5, catchiness=0.5, duration=15.0)
        return audio.descriptors(y, SR)["spectral_centroid_hz"]

    assert centroid("classical") < 0.7 * centroid("rock")


def test_the_synthesised_song_plays_its_choruses_where_song_sections_says():
    sections = song_sections(tempo=120.0, catchiness=0.9, duration=60.0)
    assert sections[0][0] == "intro" and sections[-1][2] == 60.0
    assert sum(kind == "chorus" for kind, _, _ in sections) >= 3
    y = synthesize(3, genre="electronic", mood="energetic", tempo=120.0, energy=0.7, catchiness=0.9)
    level = {kind: [] for kind, _, _ in sections}
    for kind, start, end in sections:
        level[kind].append(np.mean(y[int(start * SR):int(end * SR)] ** 2))
    assert np.mean(level["chorus"]) > 1.5 * np.mean(level["verse"])  # the chorus is the loud part


def test_catalogue_truth_is_reproducible_and_in_range():
    tracks = catalogue_truth(200, seed=3)
    assert tracks == catalogue_truth(200, seed=3) and tracks != catalogue_truth(200, seed=4)
    assert {t["genre"] for t in tracks} == set(GENRES) and {t["mood"] for t in tracks} <= set(MOOD_NAMES)
    assert all(0.06 <= t["repeat_share"] <= 0.56 and 0 <= t["catchiness"] <= 1 and 30 <= t["tempo"] <= 250 for t in tracks)
    catchy = np.array([t["catchiness"] for t in tracks])
    share = np.array([t["repeat_share"] for t in tracks])
    assert np.corrcoef(catchy, share)[0, 1] > 0.4  # engagement follows what the audio carries


def test_catalogue_genres_map_onto_sound_families():
    assert sound_of("trap") == "hip-hop" and sound_of("K-Pop") == "pop" and sound_of("unheard-of") == "pop"
