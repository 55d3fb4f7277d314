"""The demo simulator: a believable music streaming service, deterministic by seed.

Pure generation — functions return DataFrames whose columns are model field names,
so tests and benchmarks use them without a database; `manage.py seed_demo` writes
them with `bulk.upsert`.

The story it supports (see DESIGN.md, "The demo story"): listeners across five
regions whose tastes follow age and region (young hip-hop and trap fans in the
south, k-pop in the east and west, rock and metal in the north, country and jazz
for older listeners), a power-law catalogue (a few artists get most plays), ~25 %
subscribers paying monthly, lapsed listeners for a win-back campaign, concert
tickets and merch for revenue, and a K-pop single released days ago
(external id ``trk-kpop-single``) for the new-release banner.

Determinism: every random draw comes from ``numpy.random.default_rng([seed, stream,
chunk])``, and customers are generated in fixed chunks of ``CHUNK_CUSTOMERS``, so the
same seed, size and ``as_of`` give identical rows (timestamps are relative to
``as_of`` midnight UTC). Activity keys do not depend on ``as_of``: seeding again on a
later day updates the same rows instead of adding new ones.

Activity keys: ``splitmix64(base(seed) + (chunk << 32) + n)``. splitmix64 is a bijection
on 64-bit integers, so keys never collide within one seed; against imported keys
(blake2b of the event id or natural key, see ``imports.activity_keys``) and other seeds
a collision is as unlikely as between two imported rows (~ n·m / 2⁶⁴).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Iterator

import numpy as np
import pandas as pd
from django.db import transaction

from . import bulk
from .models import Activity, ActivityKind, Customer, Item, ItemKind

CHUNK_CUSTOMERS = 100_000
DEMO_SOURCE = "demo"  # attributes["source"] of every simulated customer and item; --reset deletes these
KPOP_SINGLE_ID = "trk-kpop-single"
KPOP_ARTIST = "NOVA9"
KPOP_SINGLE_TITLE = "Supernova Heart"
KPOP_SINGLE_AGE_DAYS = 12
DAY = 86_400


# -- the world ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Genre:
    name: str
    share: float  # share of all listening
    age: float  # typical listener age
    languages: dict[str, float]  # "" = instrumental
    moods: tuple[str, ...]
    regions: dict[str, float] = field(default_factory=dict)  # popularity multiplier per region


def _g(name, share, age, languages, moods, **regions):
    return Genre(name, share, age, languages, tuple(moods.split()), regions)


GENRES: tuple[Genre, ...] = (
    _g("pop", 12, 26, {"en": 8, "es": 1, "fr": 0.5, "de": 0.5}, "upbeat happy romantic", central=1.3),
    _g("hip-hop", 10, 22, {"en": 9, "fr": 1, "de": 0.7, "es": 0.5}, "energetic confident party", south=2.0, west=1.1),
    _g("trap", 3, 21, {"en": 9, "es": 1}, "dark energetic confident", south=2.0),
    _g("drill", 1.2, 20, {"en": 8, "fr": 2}, "dark aggressive", south=1.6, north=1.2),
    _g("r&b", 5, 27, {"en": 10}, "romantic smooth chill", south=1.5),
    _g("soul", 1.5, 45, {"en": 10}, "warm romantic", south=1.3),
    _g("funk", 1, 38, {"en": 9, "pt": 1}, "groovy party"),
    _g("rock", 6, 41, {"en": 9, "de": 1}, "energetic rebellious", north=1.5),
    _g("alternative", 3, 33, {"en": 10}, "melancholic energetic", west=1.3),
    _g("indie", 4, 28, {"en": 8, "fr": 1, "de": 1}, "dreamy melancholic", west=1.5),
    _g("punk", 1, 30, {"en": 10}, "rebellious aggressive", north=1.4),
    _g("metal", 2.5, 33, {"en": 7, "de": 2, "ja": 0.5}, "aggressive dark", north=2.0),
    _g("folk", 1.5, 40, {"en": 8, "de": 1, "fr": 1}, "calm warm", north=1.5),
    _g("singer-songwriter", 2, 32, {"en": 10}, "calm melancholic"),
    _g("country", 3, 42, {"en": 10}, "warm nostalgic", south=1.8, central=1.3),
    _g("blues", 0.8, 52, {"en": 10}, "melancholic warm", south=1.4),
    _g("jazz", 1.8, 48, {"en": 8, "fr": 2}, "smooth calm", east=1.2),
    _g("classical", 2, 54, {"": 10}, "calm focus", east=1.3),
    _g("soundtrack", 1.5, 30, {"": 6, "en": 4}, "epic focus"),
    _g("ambient", 1, 32, {"": 10}, "calm focus sleep", west=1.2),
    _g("lo-fi", 2, 22, {"": 9, "en": 1}, "chill focus sleep", west=1.4),
    _g("electronic", 4, 27, {"en": 6, "": 3, "de": 1}, "energetic party", west=1.5),
    _g("house", 2, 29, {"en": 7, "": 3}, "party groovy", west=1.3, central=1.2),
    _g("techno", 1.5, 30, {"": 6, "de": 4}, "dark energetic", north=1.3),
    _g("drum & bass", 0.8, 26, {"en": 10}, "energetic", north=1.2),
    _g("dance", 2.5, 25, {"en": 8, "de": 1, "fr": 1}, "party upbeat", central=1.3),
    _g("k-pop", 3.5, 20, {"ko": 9, "en": 1}, "upbeat energetic romantic", east=1.9, west=1.3),
    _g("j-pop", 1.2, 24, {"ja": 10}, "upbeat happy", east=1.8),
    _g("c-pop", 0.6, 26, {"zh": 10}, "romantic upbeat", east=2.0),
    _g("latin", 3, 30, {"es": 8, "pt": 2}, "party romantic", south=1.5),
    _g("reggaeton", 3, 24, {"es": 10}, "party energetic", south=1.6, west=1.2),
    _g("salsa", 0.8, 38, {"es": 10}, "party happy", south=1.4),
    _g("sertanejo", 0.8, 32, {"pt": 10}, "romantic nostalgic", south=1.3),
    _g("mpb", 0.6, 40, {"pt": 10}, "calm warm"),
    _g("afrobeats", 2, 25, {"en": 7, "fr": 1}, "groovy party upbeat", south=1.3, central=1.2),
    _g("reggae", 1, 34, {"en": 10}, "chill warm", south=1.2),
    _g("dancehall", 0.8, 26, {"en": 10}, "party energetic"),
    _g("gospel", 1, 44, {"en": 10}, "uplifting warm", south=1.6),
    _g("chanson", 0.6, 50, {"fr": 10}, "romantic nostalgic", central=1.2),
    _g("schlager", 0.6, 52, {"de": 10}, "happy nostalgic", central=1.4),
)
GENRE_NAMES = tuple(g.name for g in GENRES)
GENRE_INDEX = {name: i for i, name in enumerate(GENRE_NAMES)}
RELATED = {
    "hip-hop": "trap", "trap": "hip-hop", "drill": "hip-hop", "r&b": "soul", "soul": "r&b", "rock": "alternative",
    "alternative": "indie", "indie": "alternative", "metal": "rock", "punk": "rock", "electronic": "house",
    "house": "electronic", "techno": "electronic", "dance": "pop", "k-pop": "pop", "reggaeton": "latin",
    "latin": "reggaeton", "lo-fi": "hip-hop", "folk": "singer-songwriter", "dancehall": "reggae",
}

REGIONS = ("north", "south", "east", "west", "central")
REGION_SHARE = np.array([0.18, 0.27, 0.20, 0.19, 0.16])
CITY_TIER_SHARE = np.array(  # per region: tiers 1..4 (1 = largest cities)
    [[0.20, 0.30, 0.30, 0.20], [0.25, 0.30, 0.28, 0.17], [0.35, 0.30, 0.22, 0.13], [0.33, 0.30, 0.22, 0.15], [0.45, 0.28, 0.17, 0.10]]
)
CITIES = {
    "north": ("Northport", "Frostvale"), "south": ("Bayside", "Palmera"), "east": ("Eastbrook", "Harborview"),
    "west": ("Westfield", "Sunset Bay"), "central": ("Capital City", "Midtown"),
}
GENDERS = np.array(["f", "m", "x", ""], dtype=object)
GENDER_SHARE = [0.49, 0.47, 0.02, 0.02]
PLATFORMS = np.array(["ios", "android", "web", "desktop"], dtype=object)
PLANS = {"individual": 10.99, "student": 5.99, "duo": 14.99, "family": 16.99}

# Activity kinds for a track pick; a listener's own taste completes more and skips less than discovery.
_TRACK_KINDS = np.array([ActivityKind.PLAY, ActivityKind.COMPLETE, ActivityKind.SKIP, ActivityKind.FAVOURITE,
                         ActivityKind.SHARE, ActivityKind.SEARCH], dtype=np.int16)
_KIND_P_TASTE = np.array([0.58, 0.22, 0.07, 0.045, 0.015, 0.06])
_KIND_P_DISCOVER = np.array([0.58, 0.12, 0.20, 0.02, 0.01, 0.07])
HOUR_WEIGHT = np.array([1.2, 0.7, 0.4, 0.3, 0.3, 0.5, 1.2, 2.4, 3.2, 2.6, 2.2, 2.3,
                        2.6, 2.4, 2.2, 2.3, 2.7, 3.2, 3.6, 3.8, 3.7, 3.3, 2.6, 1.8])
WEEKDAY_WEIGHT = np.array([0.92, 0.94, 0.96, 1.0, 1.12, 1.18, 1.02])  # Monday first

# -- names ----------------------------------------------------------------------------------------

_FIRST = {
    "en": "Maya Jordan Eli Nova Kai Zoe Leo Aria Jay Sam Ruby Theo Iris Miles Cleo Noah Tyler Jade Marcus Ava "
          "Dante Skye Owen Lana Felix Quinn Harper Reed Asher Nina Caleb Tessa Jonah Priya Omar Lila Rowan Eden",
    "es": "Luna Sol Rosa Diego Mateo Valentina Camila Javi Santi Lola Bruno Elena Paco Ximena Alma Nico",
    "pt": "Ana Bruno Lia Caio Marina Tiago Bia Rafa Duda Gil Iara Joca",
    "fr": "Camille Louis Léa Hugo Chloé Jules Manon Théo Inès Sacha Zélie Adèle",
    "de": "Lena Felix Jonas Mia Lukas Hanna Paul Greta Moritz Ida Emil Frieda",
    "ko": "Min-ji Ha-neul Seo-yeon Ji-ho Do-yun Yu-na Tae-min Soo-ah Jae-won Eun-bi",
    "ja": "Yuki Hana Sora Ren Aoi Kaito Mio Haru Riku Sakura",
    "zh": "Wei Lin Mei Jun Xiao Yan Hao Ling",
}
_LAST = {
    "en": "Reed Hart Vance Cole Lane Brooks Grey Stone Fox Wells Shaw Quinn Monroe Blake Carter Hayes Knox Vale "
          "Rivers Sloane Frost Wilder Banks Price Ellis Rhodes",
    "es": "Rivera Vega Cruz Morales Fuego Soto Reyes Luna Navarro Ortega Paredes Salas",
    "pt": "Sousa Lima Costa Rocha Alves Prado Melo Dias",
    "fr": "Moreau Laurent Dubois Lefèvre Roux Fontaine Girard Mercier",
    "de": "Wagner Becker Hoffmann Schulz Krüger Vogel Richter Brandt",
    "ko": "",
    "ja": "Tanaka Mori Sato Kimura Fujita Ono",
    "zh": "Chen Wang Liu Zhang Zhou Xu",
}
_RAP_PREFIX = "Lil Young Yung MC Big Kid King Lady".split()
_RAP_NAME = "Kairo Vex Dre Nyx Saint Blaze Ghost Rico Zay Sosa Kash Juno Trey Ace Nova Milo Zuri Raze Onyx Jinx".split()
_BAND_A = ("Neon Velvet Silver Midnight Golden Crimson Echo Paper Wild Static Lunar Electric Hollow Crystal Violet "
           "Broken Atlas Ember Northern Glass Iron Copper Wandering Sleeping Burning Quiet Savage Cosmic Arctic Rust").split()
_BAND_B = ("Harbor Tides Wolves Parade Hearts Ghosts Rivers Machines Kids Lights Youth Avenue Saints Pilots Satellites "
           "Bloom Drive Engines Ravens Shadows Horizons Lanterns Signals Monsters Tigers Giants Orchards Suns").split()
_KPOP_GROUP = "STELLA AURA VIVID ORBIT PRISM BLOOM ECLIPSE ZENITH ASTRA LUMINA NEXUS HALO CRUSH VERTEX".split()
_KPOP_SUFFIX = ["", "", "X", "9", "ONE", "&U", "7", "BOYS", "GIRLS", "ZONE"]
_LOFI_A = "sleepy quiet dusty rainy mellow velvet cozy drowsy sunday late".split()
_LOFI_B = "fox tapes cafe moon window kitten study clouds vinyl garden".split()
_ENSEMBLE = ["Quartet", "Ensemble", "Trio", "Chamber Orchestra", "Philharmonic"]
_WORDS = {
    "en": ("Midnight Fever Gold Heart Summer Lights Ocean Fire Dreams Paradise Echo Runaway Stars City Rain "
           "Shadow Wild Electric Forever Neon Highway Love Diamonds Thunder Ghost Sunrise Velvet Heartbeat Crown "
           "Gravity Mirror Satellite Wasted Alive Golden Hours Lonely Roses Signal Static Horizon Fade Bloom Cherry "
           "Silver Karma Rebel Paper Moon Storm Sugar Angel Motion Hollow Glow Tonight Faded Youth Mercy Riot").split(),
    "es": "Corazón Fuego Noche Luna Bailar Amor Cielo Verano Loco Besos Calle Sueño Mar Vida Fiesta Perreo".split(),
    "pt": "Saudade Coração Noite Praia Amor Sol Mar Vida Festa Lua Sonho".split(),
    "fr": "Nuit Amour Soleil Coeur Rêve Étoile Ville Pluie Toujours Lumière".split(),
    "de": "Nacht Liebe Sommer Herz Traum Sterne Stadt Regen Feuer Himmel Weg".split(),
    "ko": "Saranghae Byeol Kkum Haneul Bom Yeoreum Bam Sesang Sumbisori Neoui Maeum Bit".split(),
    "ja": "Sakura Yume Hoshi Sora Natsu Kimi Yoru Hikari Kokoro Ame Ai".split(),
    "zh": "Ai Xing Meng Yue Tian Xin Ye Guang Feng".split(),
}
_CLASSICAL_FORMS = "Sonata Nocturne Etude Prelude Concerto Suite Fugue Waltz Symphony Serenade Impromptu Rhapsody".split()
_CLASSICAL_KEYS = ["C major", "D minor", "E-flat major", "G major", "A minor", "B-flat major", "F minor", "E major"]
_MERCH = {  # category: (title pattern, price range)
    "t-shirt": ("{artist} Tour T-shirt", 25, 35), "hoodie": ("{artist} Hoodie", 55, 70),
    "vinyl": ("{album} — Vinyl LP", 28, 40), "poster": ("{artist} Poster", 12, 18),
    "tote": ("{artist} Tote Bag", 15, 20), "lightstick": ("{artist} Official Lightstick", 45, 60),
}
_VENUES = ["Arena", "Stadium", "Hall", "Theatre", "Amphitheatre", "Club"]


@dataclass(frozen=True)
class DemoConfig:
    """What to simulate. `as_of` is the anchor date: activity falls in [as_of - days, as_of) UTC."""

    seed: int = 1
    customers: int = 10_000
    days: int = 180
    activities_per_customer: float = 20.0
    as_of: date = field(default_factory=lambda: datetime.now(timezone.utc).date())
    artists: int = 3000
    id_prefix: str = ""  # prefixes every external id (the bench uses "bench-")
    source: str = DEMO_SOURCE

    @property
    def anchor_day(self) -> int:
        """as_of midnight UTC, in days since the epoch."""
        return (self.as_of - date(1970, 1, 1)).days

    @property
    def chunks(self) -> int:
        return math.ceil(self.customers / CHUNK_CUSTOMERS)


# -- helpers ----------------------------------------------------------------------------------------


def _rng(config: DemoConfig, stream: int, chunk: int = 0) -> np.random.Generator:
    return np.random.default_rng([config.seed & 0xFFFFFFFF, config.seed >> 32, stream, chunk])


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijection on uint64 that scatters a counter over the whole range."""
    z = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def activity_keys(seed: int, chunk: int, count: int) -> np.ndarray:
    """Signed 64-bit keys for a chunk's activities: unique within a seed (see the module docstring)."""
    base = int.from_bytes(hashlib.blake2b(f"demo:{seed}".encode(), digest_size=8).digest(), "big")
    with np.errstate(over="ignore"):
        counter = np.uint64(base) + (np.uint64(chunk) << np.uint64(32)) + np.arange(count, dtype=np.uint64)
    return splitmix64(counter).view(np.int64)


def _segment_cdf(segment: np.ndarray, weights: np.ndarray, segments: int) -> np.ndarray:
    """For rows sorted by segment: segment + cumulative share of the weight within the segment.

    `np.searchsorted(cdf, s + u, side="right")` with u ~ U[0, 1) then draws a row of
    segment s in proportion to its weight — one vectorised call for millions of draws.
    """
    counts = np.bincount(segment, minlength=segments)
    if (counts == 0).any():
        raise ValueError("every segment needs at least one row")
    totals = np.bincount(segment, weights=weights, minlength=segments)
    cum = np.cumsum(weights)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    before = cum[starts] - weights[starts]
    cdf = segment + (cum - before[segment]) / totals[segment]
    cdf[np.cumsum(counts) - 1] = np.arange(segments) + 1.0  # exact segment ends despite rounding
    return cdf


def _draw(cdf: np.ndarray, segment: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.searchsorted(cdf, segment + rng.random(len(segment)), side="right")


def _words(lang: str) -> list[str]:
    return _WORDS.get(lang) or _WORDS["en"]


# Names and titles draw from random.Random (seeded from the seed): per-item scalar draws are
# ~20x cheaper there than numpy's Generator.choice, and just as reproducible.


def _title(py: random.Random, lang: str, genre: str) -> str:
    if genre == "classical":
        return f"{py.choice(_CLASSICAL_FORMS)} No. {py.randint(1, 24)} in {py.choice(_CLASSICAL_KEYS)}"
    title = " ".join(py.sample(_words(lang), py.choice((1, 2, 2, 3))))
    return title.lower() if genre == "lo-fi" else title


def _artist_name(py: random.Random, genre: str, lang: str) -> str:
    lang = lang or "en"
    if genre in ("hip-hop", "trap", "drill") and py.random() < 0.55:
        return f"{py.choice(_RAP_PREFIX)} {py.choice(_RAP_NAME)}"
    if genre == "k-pop":
        if py.random() < 0.7:
            return f"{py.choice(_KPOP_GROUP)} {py.choice(_KPOP_SUFFIX)}".strip()
        return py.choice(_FIRST["ko"].split())
    if genre in ("lo-fi", "ambient"):
        return f"{py.choice(_LOFI_A)} {py.choice(_LOFI_B)}"
    if genre == "classical":
        if py.random() < 0.5:
            return f"{py.choice(_LAST[py.choice(['de', 'fr', 'en'])].split())} {py.choice(_ENSEMBLE)}"
        lang = py.choice(["de", "fr", "en", "ja"])
    if genre in ("rock", "indie", "alternative", "metal", "punk", "folk") and py.random() < 0.6:
        name = f"{py.choice(_BAND_A)} {py.choice(_BAND_B)}"
        return f"The {name}" if py.random() < 0.3 else name
    if lang == "es" and py.random() < 0.2:
        return f"Los {py.choice(_LAST['es'].split())}"
    first = py.choice(_FIRST.get(lang, _FIRST["en"]).split())
    last = _LAST.get(lang, "").split()
    return f"{first} {py.choice(last)}" if last else first


def _unique_name(py: random.Random, genre: str, lang: str, taken: set[str]) -> str:
    for _ in range(20):
        name = _artist_name(py, genre, lang)
        if name not in taken:
            return name
    first, _, rest = name.partition(" ")  # a crowded pattern: "Sacha Dubois" -> "Sacha K. Dubois"
    while True:
        candidate = f"{first} {py.choice('ABCDEFGHJKLMNPRSTVW')}. {rest}".strip()
        if candidate not in taken:
            return candidate


# -- the catalogue --------------------------------------------------------------------------------


@dataclass
class Catalogue:
    """Items (a DataFrame in model fields) plus the arrays the activity sampler needs.

    Rows are ordered artists, albums, tracks, concerts, merch; tracks are sorted by
    genre then artist, so each genre's and each artist's tracks are contiguous.
    """

    items: pd.DataFrame
    release_day: np.ndarray  # per item, days since epoch
    track_pos: np.ndarray  # item row of each track
    track_genre: np.ndarray
    track_artist: np.ndarray
    track_album_pos: np.ndarray
    track_artist_pos: np.ndarray  # item row of the track's artist item
    track_by_genre: np.ndarray  # cdf for _draw by genre
    track_by_artist: np.ndarray  # cdf for _draw by artist
    artist_genre: np.ndarray
    artist_by_genre: np.ndarray  # cdf over artists by genre (popularity)
    track_release: np.ndarray  # per track, days since epoch
    evergreen_track: np.ndarray  # per genre: its most played track released before the window
    product_pos: np.ndarray
    product_genre: np.ndarray
    product_region: np.ndarray  # region index for concerts, -1 for merch
    product_price: np.ndarray
    product_weight: np.ndarray
    product_is_concert: np.ndarray
    genre_share: np.ndarray

    @property
    def external_ids(self) -> np.ndarray:
        return self.items["external_id"].to_numpy(dtype=object)


def catalogue(config: DemoConfig) -> Catalogue:
    """Genres → artists (power-law popularity) → albums → tracks, plus concerts, merch and the K-pop single."""
    rng = _rng(config, 0)
    prefix = config.id_prefix
    anchor = config.anchor_day
    window_start = anchor - config.days
    n_genres = len(GENRES)
    share = np.array([g.share for g in GENRES])
    share = share / share.sum()

    # Artists: every genre gets at least one; popularity is Pareto (a few stars, a long tail).
    n_artists = max(config.artists, 2 * n_genres)
    artist_genre = np.concatenate([np.arange(n_genres), rng.choice(n_genres, n_artists - n_genres, p=share)])
    popularity = rng.pareto(1.1, n_artists) + 1.0
    order = np.lexsort((-popularity, artist_genre))
    artist_genre, popularity = artist_genre[order], popularity[order]
    kpop = GENRE_INDEX["k-pop"]
    kpop_star = int(np.flatnonzero(artist_genre == kpop)[0])  # the most popular k-pop act becomes NOVA9

    py = random.Random(f"demo-catalogue:{config.seed}")
    names: list[str] = []
    languages: list[str] = []
    taken: set[str] = {KPOP_ARTIST}
    for a in range(n_artists):
        genre = GENRES[artist_genre[a]]
        lang = py.choices(list(genre.languages), weights=list(genre.languages.values()))[0]
        name = KPOP_ARTIST if a == kpop_star else _unique_name(py, genre.name, lang, taken)
        taken.add(name)
        names.append(name)
        languages.append(lang)

    rows: list[dict] = []
    release_day: list[int] = []

    def add(external_id, kind, title, artist, genres, language, moods, released, price=None, **attributes):
        rows.append({
            "external_id": prefix + external_id, "kind": kind, "title": title, "artist": artist, "genres": genres,
            "language": language, "moods": moods, "release_date": released, "price": price,
            "attributes": {"source": config.source, **attributes},
        })
        release_day.append(released)

    pop_score = np.log(popularity)
    pop_score = np.round(100 * (0.15 + 0.85 * pop_score / pop_score.max())).astype(int)
    artist_pos = np.empty(n_artists, dtype=np.int64)
    debut = anchor - config.days - 30 - (rng.exponential(1500, n_artists)).astype(int)
    for a in range(n_artists):
        genre = GENRES[artist_genre[a]].name
        artist_pos[a] = len(rows)
        add(f"art-{a + 1:04d}", ItemKind.ARTIST, names[a], names[a], [genre], languages[a], [], int(debut[a]),
            popularity=int(pop_score[a]))

    # Albums and tracks, artist by artist (so tracks stay sorted by genre, then artist).
    album_rows: list[dict] = []
    track_rows: list[tuple] = []  # (artist, album_index, title, language, moods, genres, released, weight, duration)
    n_albums = 1 + np.minimum(rng.poisson(0.8 + 0.6 * np.log(popularity)), 7)
    for a in range(n_artists):
        genre = GENRES[artist_genre[a]]
        first_release = int(debut[a])
        span = max(anchor - first_release - 1, 1)
        # The debut is older than the window, so every artist has evergreen tracks.
        album_days = [first_release] + sorted(first_release + py.randrange(span) for _ in range(n_albums[a] - 1))
        secondary = [RELATED[genre.name]] if genre.name in RELATED and py.random() < 0.4 else []
        first_track = len(track_rows)
        for released in album_days:
            n_tracks = py.choices((1, 4, 5, 8, 10, 12, 14), weights=(15, 15, 10, 15, 20, 15, 10))[0]
            album_type = "single" if n_tracks == 1 else "ep" if n_tracks <= 5 else "album"
            album_title = _title(py, languages[a], genre.name)
            album_rows.append({"artist": a, "title": album_title, "released": released, "tracks": n_tracks, "type": album_type,
                               "genres": [genre.name, *secondary]})
            for _ in range(n_tracks):
                title = album_title if n_tracks == 1 else _title(py, languages[a], genre.name)
                moods = sorted(set(py.choices(genre.moods, k=2)))
                track_rows.append([a, len(album_rows) - 1, title, languages[a], moods, [genre.name, *secondary], released,
                                   0.0, int(py.gauss(205, 35))])
        # Zipf within the artist: a couple of hits, then deep cuts.
        ranks = list(range(1, len(track_rows) - first_track + 1))
        py.shuffle(ranks)
        for t, r in zip(range(first_track, len(track_rows)), ranks):
            track_rows[t][7] = popularity[a] / r ** 1.1
        if a == kpop_star:  # the new single, days old, the act's hottest track
            released = anchor - KPOP_SINGLE_AGE_DAYS
            album_rows.append({"artist": a, "title": KPOP_SINGLE_TITLE, "released": released, "tracks": 1, "type": "single",
                               "genres": ["k-pop", "pop"], "external_id": "alb-kpop-single"})
            track_rows.append([a, len(album_rows) - 1, KPOP_SINGLE_TITLE, "ko", ["upbeat", "energetic"], ["k-pop", "pop"],
                               released, popularity[a] * 4.0, 198, KPOP_SINGLE_ID])

    album_pos = np.empty(len(album_rows), dtype=np.int64)
    for i, album in enumerate(album_rows):
        a = album["artist"]
        album_pos[i] = len(rows)
        add(album.get("external_id", f"alb-{i + 1:05d}"), ItemKind.ALBUM, album["title"], names[a], album["genres"],
            languages[a], [], album["released"], artist_id=prefix + f"art-{a + 1:04d}", tracks=album["tracks"],
            type=album["type"])

    weights = np.array([t[7] for t in track_rows])
    track_score = np.log(weights / weights.min() + 1)
    track_score = np.round(100 * track_score / track_score.max()).astype(int)
    track_pos = np.empty(len(track_rows), dtype=np.int64)
    for i, t in enumerate(track_rows):
        a, album = t[0], t[1]
        track_pos[i] = len(rows)
        external_id = t[9] if len(t) > 9 else f"trk-{i + 1:06d}"
        add(external_id, ItemKind.TRACK, t[2], names[a], t[5], t[3], t[4], t[6],
            album_id=prefix + album_rows[album].get("external_id", f"alb-{album + 1:05d}"), duration_s=max(t[8], 60),
            popularity=int(track_score[i]))

    # Concerts (on sale now, shows in the coming months) and merch for the bigger acts.
    stars = np.argsort(-popularity)[: max(40, n_artists // 40)]
    product_rows: list[tuple] = []  # (item row, genre, region, price, weight, is_concert)
    for c, a in enumerate(rng.choice(stars, min(24, len(stars)), replace=False)):
        region = int(rng.choice(len(REGIONS), p=REGION_SHARE))
        city = py.choice(CITIES[REGIONS[region]])
        venue = f"{city} {py.choice(_VENUES)}"
        price = float(np.round(rng.uniform(35, 180), 0) - 0.01)
        show = anchor + int(rng.integers(10, 120))
        product_rows.append((len(rows), artist_genre[a], region, price, math.sqrt(popularity[a]), True))
        add(f"cnc-{c + 1:03d}", ItemKind.CONCERT, f"{names[a]} — Live at {venue}", names[a], [GENRES[artist_genre[a]].name],
            languages[a], [], anchor - int(rng.integers(20, max(21, min(150, config.days)))), price, venue=venue, city=city,
            region=REGIONS[region], event_date=(date(1970, 1, 1) + timedelta(days=show)).isoformat())
    merch_artists = rng.choice(stars, min(30, len(stars)), replace=False)
    m = 0
    for a in merch_artists:
        genre = GENRES[artist_genre[a]].name
        categories = ["t-shirt", "hoodie", "poster", "tote", "vinyl"]
        if genre == "k-pop":
            categories.append("lightstick")
        for category in rng.choice(categories, 2, replace=False):
            pattern, low, high = _MERCH[str(category)]
            album = next(r["title"] for r in album_rows if r["artist"] == a)
            price = float(np.round(rng.uniform(low, high), 0) - 0.01)
            m += 1
            product_rows.append((len(rows), artist_genre[a], -1, price, math.sqrt(popularity[a]) * 0.8, False))
            add(f"mer-{m:03d}", ItemKind.PRODUCT, pattern.format(artist=names[a], album=album), names[a], [genre],
                languages[a], [], min(int(debut[a]) + int(rng.integers(0, 400)), anchor - 30), price, category=str(category))

    items = pd.DataFrame(rows)
    items["release_date"] = pd.to_datetime(np.array(release_day, dtype="int64"), unit="D")
    items["price"] = items["price"].astype(float)

    track_artist = np.array([t[0] for t in track_rows], dtype=np.int64)
    track_genre = artist_genre[track_artist]
    track_release = np.array([t[6] for t in track_rows], dtype=np.int64)
    evergreen = np.empty(n_genres, dtype=np.int64)
    for g in range(n_genres):
        candidates = np.flatnonzero((track_genre == g) & (track_release <= window_start))
        evergreen[g] = candidates[np.argmax(weights[candidates])]
    products = np.array(product_rows, dtype=object)
    return Catalogue(
        items=items,
        release_day=np.array(release_day, dtype=np.int64),
        track_pos=track_pos,
        track_genre=track_genre,
        track_artist=track_artist,
        track_album_pos=album_pos[np.array([t[1] for t in track_rows], dtype=np.int64)],
        track_artist_pos=artist_pos[track_artist],
        track_by_genre=_segment_cdf(track_genre, weights, n_genres),
        track_by_artist=_segment_cdf(track_artist, weights, n_artists),
        artist_genre=artist_genre,
        artist_by_genre=_segment_cdf(artist_genre, popularity, n_genres),
        track_release=track_release,
        evergreen_track=evergreen,
        product_pos=products[:, 0].astype(np.int64),
        product_genre=products[:, 1].astype(np.int64),
        product_region=products[:, 2].astype(np.int64),
        product_price=products[:, 3].astype(float),
        product_weight=products[:, 4].astype(float),
        product_is_concert=products[:, 5].astype(bool),
        genre_share=share,
    )


# -- listeners ------------------------------------------------------------------------------------


@dataclass
class Listeners:
    """One chunk of customers: the rows to store and the hidden traits that drive their activity."""

    frame: pd.DataFrame
    start: int  # ordinal of the first customer
    age: np.ndarray
    region: np.ndarray
    tier: np.ndarray
    favourites: np.ndarray  # (n, 3) genre indexes, -1 where fewer than three
    n_favourites: np.ndarray
    top_artist: np.ndarray
    level: np.ndarray  # activity level, mean 1, heavy-tailed
    trend: np.ndarray  # > 0: more activity recently
    discover: np.ndarray  # share of plays outside their taste
    loyalty: np.ndarray  # share of taste plays from their top artist
    first_day: np.ndarray  # first active day (signup or window start)
    end_day: np.ndarray  # exclusive; before as_of for lapsed listeners
    subscribed_day: np.ndarray  # -1 for never subscribed
    plan_fee: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _calibrate(logit: np.ndarray, share: float) -> np.ndarray:
    """Shift the logit so that the mean probability is `share` (bisection; deterministic)."""
    low, high = -20.0, 20.0
    for _ in range(50):
        mid = (low + high) / 2
        if _sigmoid(logit + mid).mean() < share:
            low = mid
        else:
            high = mid
    return _sigmoid(logit + (low + high) / 2)


def listeners(config: DemoConfig, cat: Catalogue, chunk: int) -> Listeners:
    """Customers `chunk * CHUNK_CUSTOMERS …`: demographics, taste, activity level, subscription."""
    rng = _rng(config, 1, chunk)
    start = chunk * CHUNK_CUSTOMERS
    n = min(CHUNK_CUSTOMERS, config.customers - start)
    anchor = config.anchor_day
    window_start = anchor - config.days

    age = np.clip(16 + rng.gamma(2.0, 8.0, n), 16, 70).astype(np.int64)
    region = rng.choice(len(REGIONS), n, p=REGION_SHARE)
    cum_tier = np.cumsum(CITY_TIER_SHARE, axis=1)[:, :-1]
    tier = 1 + (rng.random(n)[:, None] > cum_tier[region]).sum(axis=1)
    gender = GENDERS[rng.choice(len(GENDERS), n, p=GENDER_SHARE)]
    signup_day = anchor - np.minimum(1 + rng.exponential(600, n), 2900).astype(np.int64)
    level = np.exp(1.1 * rng.standard_normal(n) - 1.1**2 / 2)

    # Taste: genre affinity follows age (a bell around the genre's typical listener age) and region.
    centres = np.array([g.age for g in GENRES])
    boost = np.array([[g.regions.get(r, 1.0) for g in GENRES] for r in REGIONS])
    affinity = cat.genre_share[None, :] * (0.1 + np.exp(-0.5 * ((age[:, None] - centres[None, :]) / 11.0) ** 2)) * boost[region]
    gumbel = -np.log(-np.log(rng.random(affinity.shape)))
    top = np.argsort(-(np.log(affinity) + gumbel), axis=1)[:, :3]
    n_fav = rng.choice([1, 2, 3], n, p=[0.35, 0.4, 0.25])
    favourites = np.where(np.arange(3)[None, :] < n_fav[:, None], top, -1)
    top_artist = _draw(cat.artist_by_genre, favourites[:, 0], rng)

    # ~25 % subscribers, more among heavy listeners, big cities and 25-45 year olds; some lapsed.
    logit = 0.7 * np.log(level) + 0.5 * (tier == 1) + 0.2 * (tier == 2) - 0.5 * (age < 20) - 0.5 * (age > 58)
    subscribed = rng.random(n) < _calibrate(logit + 0.3 * ((age >= 25) & (age <= 45)), 0.265)
    lapse_p = np.where(subscribed, 0.06, 0.22)
    lapsed = (rng.random(n) < lapse_p) & (config.days >= 45)
    lapse_day = window_start + 7 + (rng.random(n) * max(config.days - 28, 1)).astype(np.int64)
    first_day = np.maximum(signup_day, window_start)
    lapsed &= lapse_day > first_day + 3
    end_day = np.where(lapsed, lapse_day, anchor)
    is_subscriber = subscribed & ~lapsed  # lapsed subscribers cancelled: the win-back audience

    plan_u = rng.random(n)
    plan = np.where(
        (age <= 24) & (plan_u < 0.5), "student",
        np.where(plan_u > 0.85, "family", np.where(plan_u > 0.77, "duo", "individual")),
    ).astype(object)
    plan_fee = np.where(subscribed, np.vectorize(PLANS.get, otypes=[float])(plan), 0.0)
    subscribed_day = np.where(subscribed, np.maximum(signup_day, anchor - 1 - rng.exponential(350, n).astype(np.int64)), -1)

    platform = PLATFORMS[np.where(age < 30, rng.choice(4, n, p=[0.45, 0.45, 0.05, 0.05]), rng.choice(4, n, p=[0.3, 0.38, 0.2, 0.12]))]
    prefix = config.id_prefix
    genre_names = np.array(GENRE_NAMES, dtype=object)
    attributes = []
    for i in range(n):
        attrs = {"source": config.source, "platform": platform[i],
                 "onboarding_genres": [genre_names[g] for g in favourites[i, : n_fav[i]]]}
        if subscribed[i]:
            attrs["plan"] = plan[i]
        attributes.append(attrs)
    frame = pd.DataFrame({
        "external_id": [f"{prefix}cust-{start + i + 1:07d}" for i in range(n)],
        "birth_year": config.as_of.year - age,
        "gender": gender,
        "region": np.array(REGIONS, dtype=object)[region],
        "city_tier": tier,
        "signup_date": pd.to_datetime(signup_day, unit="D"),
        "is_subscriber": is_subscriber,
        "attributes": attributes,
    })
    trend = np.clip(0.15 + 0.35 * np.log(level) + 0.15 * rng.standard_normal(n), 0.0, 1.5)
    return Listeners(
        frame=frame, start=start, age=age, region=region, tier=tier, favourites=favourites, n_favourites=n_fav,
        top_artist=top_artist, level=level, trend=trend, discover=rng.beta(2, 6, n), loyalty=rng.beta(2, 5, n),
        first_day=first_day, end_day=end_day, subscribed_day=subscribed_day, plan_fee=plan_fee,
    )


# -- activity -------------------------------------------------------------------------------------


def _days(rng: np.random.Generator, low: np.ndarray, high: np.ndarray, trend: np.ndarray) -> np.ndarray:
    """Days in [low, high), denser towards `high` when trend > 0, with the weekly rhythm (weekends busier)."""
    days = np.empty(len(low), dtype=np.int64)
    todo = np.arange(len(low))
    accept = WEEKDAY_WEIGHT / WEEKDAY_WEIGHT.max()
    for _ in range(8):
        u = rng.random(len(todo)) ** (1.0 / (1.0 + trend[todo]))
        day = low[todo] + np.floor(u * (high[todo] - low[todo])).astype(np.int64)
        ok = rng.random(len(todo)) < accept[(day + 3) % 7]  # 1970-01-01 was a Thursday
        days[todo[ok]] = day[ok]
        todo = todo[~ok]
        if not len(todo):
            break
    days[todo] = low[todo]
    return days


def _seconds_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    hour = rng.choice(24, n, p=HOUR_WEIGHT / HOUR_WEIGHT.sum())
    return hour * 3600 + rng.integers(0, 3600, n)


def _session_seconds(rng: np.random.Generator, owner: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Listening comes in sessions: a listener's picks of a day fall into one or two sessions, one
    track after another (about 3½ minutes apart), so item2vec and session features see real sequences."""
    n = len(owner)
    key = (owner.astype(np.int64) * 100_000 + day) * 2 + rng.integers(0, 2, n)
    _, inverse = np.unique(key, return_inverse=True)
    start = _seconds_of_day(rng, int(inverse.max()) + 1 if n else 0)
    order = np.argsort(inverse, kind="stable")
    first = np.r_[0, np.flatnonzero(np.diff(inverse[order])) + 1] if n else np.zeros(0, np.int64)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.repeat(first, np.diff(np.r_[first, n]))
    return np.minimum(start[inverse] + rank * 210 + rng.integers(0, 60, n), DAY - 1)


def activities(config: DemoConfig, cat: Catalogue, people: Listeners, chunk: int) -> pd.DataFrame:
    """What a chunk of listeners did over the window.

    Columns: key, customer (external id), item (external id or None), kind, quantity,
    value, occurred_at, plus customer_pos (ordinal) and item_pos (catalogue row, -1
    for none) so a writer can map to primary keys without string lookups.
    """
    rng = _rng(config, 2, chunk)
    anchor = config.anchor_day
    n_people = len(people.frame)
    # Listeners who joined recently or lapsed early had less time to be active.
    span = np.clip((people.end_day - people.first_day) / config.days, 0.0, 1.0) ** 0.9
    counts = rng.poisson(config.activities_per_customer * people.level * span / max(span.mean(), 1e-9))
    owner = np.repeat(np.arange(n_people), counts)
    total = len(owner)

    # Where a pick comes from: discovery (charts), the listener's top artist, or a favourite genre.
    u = rng.random(total)
    discover = u < people.discover[owner]
    from_artist = ~discover & (rng.random(total) < people.loyalty[owner])
    slot_u = rng.random(total)
    k = people.n_favourites[owner]
    first_cut = np.select([k == 1, k == 2], [1.0, 0.65], 0.55)
    second_cut = np.where(k == 3, 0.85, 1.0)
    slot = (slot_u > first_cut).astype(np.int64) + (slot_u > second_cut)
    genre = people.favourites[owner, slot]
    genre = np.where(discover, rng.choice(len(GENRES), total, p=cat.genre_share), genre)
    track = _draw(cat.track_by_genre, genre, rng)
    by_artist = np.flatnonzero(from_artist)
    track[by_artist] = _draw(cat.track_by_artist, people.top_artist[owner[by_artist]], rng)
    day = _days(rng, people.first_day[owner], people.end_day[owner], people.trend[owner])
    track = _released_by(rng, cat, track, day)
    track = _lifecycle(rng, cat, track, day, ~from_artist)
    item = cat.track_pos[track]

    kind_u = rng.random(total)
    kind = np.where(
        discover,
        _TRACK_KINDS[np.searchsorted(np.cumsum(_KIND_P_DISCOVER)[:-1], kind_u, side="right")],
        _TRACK_KINDS[np.searchsorted(np.cumsum(_KIND_P_TASTE)[:-1], kind_u, side="right")],
    )
    # Favourites, shares and searches often land on the artist or the album rather than the track.
    other = rng.random(total)
    to_artist = ((kind == ActivityKind.FAVOURITE) & (other < 0.25)) | ((kind == ActivityKind.SEARCH) & (other < 0.6))
    to_album = ((kind == ActivityKind.FAVOURITE) & (other >= 0.25) & (other < 0.35)) | ((kind == ActivityKind.SHARE) & (other < 0.2))
    item = np.where(to_artist, cat.track_artist_pos[track], np.where(to_album, cat.track_album_pos[track], item))

    # Purchases: concert tickets near home and merch of the genres they love.
    buy_rate = 0.004 * people.level**0.3 * np.where(people.tier == 1, 1.5, 1.0) * np.where(people.subscribed_day >= 0, 1.4, 1.0)
    buying = np.flatnonzero(rng.random(total) < buy_rate[owner])
    quantity = np.ones(total)
    value = np.zeros(total)
    if len(buying):
        buyer = owner[buying]
        loves = (people.favourites[buyer][:, :, None] == cat.product_genre[None, None, :]).any(axis=1)
        weight = cat.product_weight[None, :] * np.where(loves, 6.0, 1.0)
        home = people.region[buyer][:, None] == cat.product_region[None, :]
        weight = weight * np.where(cat.product_is_concert[None, :], np.where(home, 3.0, 0.3), 1.0)
        gumbel = -np.log(-np.log(rng.random(weight.shape)))
        product = np.argmax(np.log(weight) + gumbel, axis=1)
        concert = cat.product_is_concert[product]
        tickets = rng.choice([1, 2, 3, 4], len(buying), p=[0.55, 0.33, 0.08, 0.04])
        pieces = rng.choice([1, 2], len(buying), p=[0.88, 0.12])
        kind[buying] = ActivityKind.PURCHASE
        item[buying] = cat.product_pos[product]
        quantity[buying] = np.where(concert, tickets, pieces)
        value[buying] = np.round(cat.product_price[product] * quantity[buying], 2)
        # Tickets go on sale during the window: a buyer who came too early comes back later.
        stuck = _fit_release(rng, cat, day, item, people.first_day[owner], people.end_day[owner], buying)
        kind[stuck], item[stuck], quantity[stuck], value[stuck] = ActivityKind.PLAY, cat.track_pos[track[stuck]], 1.0, 0.0
    seconds = day * DAY + _session_seconds(rng, owner, day)

    # Subscriptions: a monthly payment from the start of the plan until as_of (or until they lapsed).
    period = 30.4375
    subs = np.flatnonzero(people.subscribed_day >= 0)
    start_day = people.subscribed_day[subs]
    window_start = anchor - config.days
    first_k = np.maximum(0, np.ceil((window_start - start_day) / period)).astype(np.int64)
    last_k = np.floor((people.end_day[subs] - 1 - start_day) / period).astype(np.int64)
    n_pay = np.maximum(0, last_k - first_k + 1)
    payer = np.repeat(subs, n_pay)
    nth = np.arange(len(payer)) - np.repeat(np.cumsum(n_pay) - n_pay, n_pay) + np.repeat(first_k, n_pay)
    pay_day = people.subscribed_day[payer] + np.floor(nth * period).astype(np.int64)
    pay_seconds = pay_day * DAY + _seconds_of_day(rng, len(payer))

    owner = np.concatenate([owner, payer])
    item = np.concatenate([item, np.full(len(payer), -1)])
    kind = np.concatenate([kind, np.full(len(payer), ActivityKind.SUBSCRIBE, dtype=np.int16)])
    quantity = np.concatenate([quantity, np.ones(len(payer))])
    value = np.concatenate([value, people.plan_fee[payer]])
    seconds = np.concatenate([seconds, pay_seconds])

    order = np.lexsort((seconds, owner))
    owner, item, kind, quantity, value, seconds = owner[order], item[order], kind[order], quantity[order], value[order], seconds[order]
    external = cat.external_ids
    item_ids = np.where(item >= 0, external[np.maximum(item, 0)], None)
    customer_ids = people.frame["external_id"].to_numpy(dtype=object)[owner]
    return pd.DataFrame({
        "key": activity_keys(config.seed, chunk, len(owner)),
        "customer": customer_ids,
        "item": item_ids,
        "kind": kind.astype(np.int64),
        "quantity": quantity,
        "value": value,
        "occurred_at": pd.to_datetime(seconds, unit="s", utc=True),
        "customer_pos": people.start + owner,
        "item_pos": item,
    })


def _released_by(rng, cat: Catalogue, track: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Nobody plays a track before it is out: such picks are drawn again from the same genre.

    Redrawing (rather than moving the day) keeps the daily volume flat, so a new release
    takes its share of listening instead of adding a spike. A few rounds, then the genre's
    evergreen hit.
    """
    track = track.copy()
    early = np.flatnonzero(day < cat.track_release[track])
    for _ in range(4):
        if not len(early):
            return track
        track[early] = _draw(cat.track_by_genre, cat.track_genre[track[early]], rng)
        early = early[day[early] < cat.track_release[track[early]]]
    track[early] = cat.evergreen_track[cat.track_genre[track[early]]]
    return track


LAUNCH_BOOST = 6.0  # a release is played 7× its usual share on its first day ...
LAUNCH_DECAY_DAYS = 7.0  # ... fading as (1 + age / 7)^-1.2: 3.6× after a week, 1.9× after a month, 1.4× after two


def _lifecycle(rng, cat: Catalogue, track: np.ndarray, day: np.ndarray, free: np.ndarray, rounds: int = 6) -> np.ndarray:
    """New releases are played most when they are new (stream forecasting learns this lifecycle).

    A pick of a track `age` days after its release is kept with probability
    (1 + B·(1 + age/τ)^−1.2) / (1 + B) and otherwise drawn again from its genre, so a track's
    plays follow its usual share times a launch boost that fades back to 1. Only `free` picks
    (charts and genre listening) move: a fan playing their artist keeps the artist.
    """
    track = track.copy()
    pending = np.flatnonzero(free)
    for _ in range(rounds):
        age = np.maximum(day[pending] - cat.track_release[track[pending]], 0)
        boost = 1.0 + LAUNCH_BOOST * (1.0 + age / LAUNCH_DECAY_DAYS) ** -1.2
        pending = pending[rng.random(len(pending)) >= boost / (1.0 + LAUNCH_BOOST)]
        if not len(pending):
            break
        track[pending] = _released_by(rng, cat, _draw(cat.track_by_genre, cat.track_genre[track[pending]], rng), day[pending])
    return track


def _fit_release(rng, cat: Catalogue, day, item, first_day, end_day, rows: np.ndarray) -> np.ndarray:
    """Move `rows` whose day precedes the item's release to a day after it (in place).

    Returns the rows whose listener was gone before the release.
    """
    early = rows[day[rows] < cat.release_day[item[rows]]]
    low = np.maximum(cat.release_day[item[early]], first_day[early])
    room = low < end_day[early]
    movable = early[room]
    day[movable] = low[room] + (rng.random(len(movable)) * (end_day[movable] - low[room])).astype(np.int64)
    return early[~room]


# -- the whole run --------------------------------------------------------------------------------


@dataclass
class Chunk:
    index: int
    customers: pd.DataFrame
    activities: pd.DataFrame


def simulate(config: DemoConfig, cat: Catalogue | None = None) -> Iterator[Chunk]:
    """Yield customers and their activities, CHUNK_CUSTOMERS at a time (memory stays flat for millions)."""
    cat = cat if cat is not None else catalogue(config)
    for chunk in range(config.chunks):
        people = listeners(config, cat, chunk)
        yield Chunk(chunk, people.frame, activities(config, cat, people, chunk))


def activity_label(kinds: pd.Series) -> pd.Series:
    """Kind numbers as the labels an export or an import file uses ("play", "purchase" …)."""
    return kinds.map(dict(ActivityKind.choices))


# -- writing: the only part that touches the database ---------------------------------------------


def store_catalogue(cat: Catalogue) -> np.ndarray:
    """Upsert the catalogue; returns the primary key of every catalogue row, in row order."""
    with transaction.atomic():  # bulk.upsert's staging table lives until commit
        bulk.upsert(Item, cat.items, conflict="external_id")
    found = bulk.lookup_ids(Item, cat.items["external_id"])
    return np.array([found[e] for e in cat.items["external_id"]], dtype=np.int64)


def store_chunk(chunk: Chunk, item_pks: np.ndarray, batch_rows: int = 500_000) -> None:
    """Upsert a chunk's customers and activities in one transaction (re-running updates, never duplicates)."""
    customers = chunk.customers
    acts = chunk.activities
    with transaction.atomic():
        bulk.upsert(Customer, customers, conflict="external_id")
        found = bulk.lookup_ids(Customer, customers["external_id"])
        customer_pks = np.array([found[e] for e in customers["external_id"]], dtype=np.int64)
        first = chunk.index * CHUNK_CUSTOMERS
        item_pos = acts["item_pos"].to_numpy()
        frame = pd.DataFrame({
            "key": acts["key"].to_numpy(),
            "customer_id": customer_pks[acts["customer_pos"].to_numpy() - first],
            "item_id": pd.arrays.IntegerArray(item_pks[np.maximum(item_pos, 0)], item_pos < 0),
            "kind": acts["kind"].to_numpy(),
            "quantity": acts["quantity"].to_numpy(),
            "value": acts["value"].to_numpy(),
            "occurred_at": acts["occurred_at"],
        })
        for start in range(0, len(frame), batch_rows):
            bulk.upsert(Activity, frame.iloc[start : start + batch_rows], conflict="key")


def delete_demo(source: str = DEMO_SOURCE, batch: int = 5000) -> dict[str, int]:
    """Delete the simulated customers and items (attributes.source == source) and all their activity."""
    deleted = {"activities": 0, "customers": 0, "items": 0}
    customers = Customer.objects.filter(attributes__source=source)
    items = Item.objects.filter(attributes__source=source)
    with transaction.atomic():
        # Activity has no dependants, so these are single DELETE … WHERE … IN (SELECT …) statements.
        deleted["activities"] += Activity.objects.filter(customer__in=customers).delete()[0]
        deleted["activities"] += Activity.objects.filter(item__in=items).delete()[0]
    for model, queryset, name in ((Customer, customers, "customers"), (Item, items, "items")):
        pks = list(queryset.values_list("pk", flat=True))
        for start in range(0, len(pks), batch):  # batches keep the deletion collector's memory flat
            with transaction.atomic():
                model.objects.filter(pk__in=pks[start : start + batch]).delete()
        deleted[name] = len(pks)
    deleted["audiences"] = _delete_demo_audiences()
    return deleted


def _delete_demo_audiences() -> int:
    """The demo story's audiences, as the simulator made them (nobody's edits: created_by is empty)."""
    from .models import Audience

    names = [name for name, _, _ in DEMO_AUDIENCES]
    made = Audience.objects.filter(created_by__isnull=True)
    # Lookalikes first: a seed cannot go while a lookalike learns from it.
    count = 0
    for queryset in (made.filter(name=DEMO_LOOKALIKE[0]), made.filter(name__in=names).exclude(lookalikes__isnull=False)):
        count += queryset.count()
        queryset.delete()
    return count


# -- audiences the demo story starts with ---------------------------------------------------------

DEMO_AUDIENCES = [
    ("Young hip-hop fans in the south, active this week", "For the hip-hop / K-pop crossover banner.",
     {"all": [{"field": "age", "op": "between", "value": [16, 30]}, {"field": "region", "op": "eq", "value": "south"},
              {"any": [{"pref": "genres", "key": "hip-hop", "op": "gte", "value": 0.2}, {"field": "top_genre", "op": "eq", "value": "hip-hop"}]},
              {"did": "play", "in_last_days": 7}]}),
    ("K-pop listeners who are not subscribers", "Premium upsell push: engaged K-pop fans on the free plan.",
     {"all": [{"pref": "genres", "key": "k-pop", "op": "gte", "value": 0.15}, {"field": "is_subscriber", "op": "eq", "value": False},
              {"did": "play", "in_last_days": 30, "at_least": 2}]}),
    ("Lapsed listeners", "Win-back e-mail: played before, silent for a month.",
     {"all": [{"did": "play"}, {"did_not": "play", "in_last_days": 30}]}),
]


def store_demo_audiences() -> list:
    """Create or refresh the demo story's audiences (by name), with their sizes."""
    from .actions import save_audience
    from .models import Audience

    saved = []
    for name, description, rule in DEMO_AUDIENCES:
        audience = Audience.objects.filter(name=name).first() or Audience(name=name)
        audience.description, audience.rule = description, rule
        saved.append(save_audience(audience, by=None))
    return saved


DEMO_LOOKALIKE = ("More listeners like our K-pop fans", "Everyone else who listens like the free-plan K-pop fans: "
                  "the new-release banner's second audience.", "K-pop listeners who are not subscribers", 5.0)


def store_demo_lookalike():
    """Queue the demo's lookalike of the K-pop fans (once; a worker trains it) when the seed is big enough."""
    from .actions import create_lookalike
    from .models import Audience, Lookalike

    name, description, seed_name, size_pct = DEMO_LOOKALIKE
    seed = Audience.objects.filter(name=seed_name, size__gte=Lookalike.MIN_SEED).first()
    if seed is None or Audience.objects.filter(name=name).exists():
        return None
    return create_lookalike(name=name, description=description, seed=seed, size_pct=size_pct, by=None)
