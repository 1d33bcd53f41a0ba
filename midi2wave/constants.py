"""Signal facts of midi2wave, each derived from the others where it can be.

The paper (Hawthorne et al., ICLR 2019) synthesizes 16 kHz audio conditioned on a piano roll at
4 ms resolution (250 Hz) over the 88 keys of the piano.
"""

from __future__ import annotations

SAMPLE_RATE_HZ: int = 16_000
FRAME_RATE_HZ: int = 250
# The conditioning is upsampled to the audio rate by an integer factor.
SAMPLES_PER_FRAME: int = SAMPLE_RATE_HZ // FRAME_RATE_HZ
assert SAMPLES_PER_FRAME * FRAME_RATE_HZ == SAMPLE_RATE_HZ

MIN_MIDI_PITCH: int = 21  # A0, the lowest piano key
MAX_MIDI_PITCH: int = 108  # C8, the highest piano key
N_KEYS: int = MAX_MIDI_PITCH - MIN_MIDI_PITCH + 1
MAX_PITCH_HZ: float = 440.0 * 2.0 ** ((MAX_MIDI_PITCH - 69) / 12.0)  # C8, about 4186 Hz
assert N_KEYS == 88

MAX_MIDI_VELOCITY: int = 127

# MIDI controllers of the three piano pedals, and the on/off threshold of the Onsets and Frames rule.
SUSTAIN_CC: int = 64
SOSTENUTO_CC: int = 66
SOFT_CC: int = 67  # una corda
PEDAL_CONTROLLERS: tuple[int, ...] = (SUSTAIN_CC, SOSTENUTO_CC, SOFT_CC)
N_PEDALS: int = len(PEDAL_CONTROLLERS)
PEDAL_ON_THRESHOLD: int = 64

# Years of MAESTRO recordings (v1-v3). Index 0 is reserved for "unknown year" so that a model can
# render MIDI of any provenance; year y has index YEARS.index(y) + 1.
MAESTRO_YEARS: tuple[int, ...] = (2004, 2006, 2008, 2009, 2011, 2013, 2014, 2015, 2017, 2018)
N_YEAR_CLASSES: int = len(MAESTRO_YEARS) + 1
UNKNOWN_YEAR_INDEX: int = 0

# Audio is stored and modelled as 16-bit PCM.
PCM_BITS: int = 16
PCM_LEVELS: int = 2**PCM_BITS
PCM_SCALE: float = float(2 ** (PCM_BITS - 1))  # int16 -> [-1, 1)
MU_LAW_CLASSES: int = 256
# The smallest log-scale of a logistic mixture component: exp(-16) ~ 1e-7, well below the bin width
# 3e-5, so a component can collapse onto a level (the model's distribution and the numba kernel).
LOG_SCALE_MIN: float = -16.0

# Rendered after the last note ends, for its release and the room (renders and the live engine).
RELEASE_SECONDS: float = 1.0


def year_index(year: int | None) -> int:
    """Global-conditioning index of a recording year (0 for unknown or unlisted years)."""
    if year is None or year not in MAESTRO_YEARS:
        return UNKNOWN_YEAR_INDEX
    return MAESTRO_YEARS.index(year) + 1
