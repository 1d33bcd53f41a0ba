"""Evaluation: does a model follow the MIDI, does it sound like a piano, and do people agree (evaluation/).

Owns: the excerpts (`excerpts.py`), the measurements (`evaluate.py`: NLL, conditioning gain,
transcription F1; `realism.py`, numpy only, and `scores.py`: gap noise, tonal purity, log-mel
distance, release jumps), transcription (`transcribe.py`, basic-pitch on onnxruntime), the
listening page (`report.py`) and the blind listening test (`listening.py`). It renders through
`render/`, reads stores through `data/` and inputs through `conditioning/`; only `cli` calls it.
Units: NLL in bits per audio sample, levels in dB, F1 at a 50 ms onset tolerance, times in seconds
relative to an excerpt's start. User-facing description: docs/evaluation.md.

Entry points (`__all__`, imported on first use: this package imports nothing heavy):
- `evaluate_checkpoint(checkpoint, options, *, json_path, device, quiet) -> exit status` (the
  command), `evaluate_model(model, config, EvaluateOptions) -> results dict`, `format_table`
  (evaluate.py);
- `store_excerpts`, `midi_excerpts`, `Excerpt` (excerpts.py); `realism_scores` (scores.py);
- `RealismOptions`, `gap_noise_db`, `tonal_purity`, `log_mel_distance`, `release_jumps_db`
  (realism.py); `get_transcriber` (transcribe.py);
- `write_report`, `ReportOptions` (report.py); `build_test`, `score_ratings` (listening.py).

Measurements (evaluate.py, excerpts.py)
---------------------------------------
Excerpts drawn with a fixed seed from a split (each holding an onset). NLL teacher forced;
conditioning gain = NLL(other excerpt's rolls + excitation) - NLL(true), and NLL(zeros) - NLL(true),
audio and year kept; transcription F1 = mir_eval onset F1 (50 ms, offsets ignored) of basic-pitch's
transcription of free-running generation against the excerpt's notes, with the ground-truth audio's
score (ceiling), the score of generation from another excerpt's MIDI (floor) and of another
excerpt's real audio (chance). For models with the innovation gain the teacher-forced gain is not
meaningful (see conditioning/'s docstring); the floor is.
Settings: `evaluate.EvaluateOptions` (store or MIDI files, split, excerpts, seed, which measurements,
other instrument, plots, report; the generations' `SamplingOptions`, settings left None resolved
with the model's `Config.sampling` as `synthesize` does), validated once; `cli.py` maps the flags to
it and `evaluate_checkpoint` loads, evaluates and writes. `nll=False` (`--no-nll`) skips the
teacher-forced pass (NLL and conditioning gain are null) for realism / F1-only evaluations.
Generations start `lead_in_seconds` (`--lead-in-seconds`, default 2) before each excerpt, from the
MIDI there (`Excerpt.lead_in`: the inputs of the longer window), and the lead-in is cut off before
scoring: notes struck before the excerpt ring into it as in a whole-piece render.

Realism (realism.py, numpy only; `scores.realism_scores`, with transcription)
-----------------------------------------------------------------------------
For each excerpt, `Excerpt.sounding` = the sustained notes whose onset .. offset + 0.5 s overlaps
the window (notes held from before it included), times relative to its start.
- Gap noise: `gap_mask` is True where no sounding note is between its onset and offset + 0.5 s;
  `gap_noise_db` = 20 log10(RMS over the gap / RMS elsewhere), floor -120 dB for exact silence,
  None with < 0.1 s of gap or no sound. Reported: the median over the excerpts that have a value,
  and how many do.
- Tonal purity: STFT 4096 / hop 256 (Hann, 16 kHz); in the frames where a sounding note overlaps
  the window, the share of energy (bins >= 20 Hz, summed over frames) in the bands
  `k f0 * 2^(+-40/1200)`, at least +-2 bins (the Hann main lobe), of every sounding note's
  harmonics up to Nyquist (equal temperament). Harmonic bands by default: widening them upward to
  stiff-string partials (`RealismOptions(stiff_strings=True)`) changed real piano audio's purity by
  <= 0.005 on the demo data but raised the bands' share of the spectrum by up to 0.13.
  `partial_coverage` (that share of bins, ~ white noise's purity) is reported beside it.
- Log-mel distance: mean |ln mel(a) - ln mel(b)| (STFT 1024 / hop 256, 80 Slaney mels as
  librosa's default filterbank, magnitude, floor 1e-5) after scaling both signals to RMS 0.1.
- Release jumps (`release_jumps_db`; `scripts/realism_of_renders.py`, not `evaluate`: 8 s excerpts
  seldom hold a release into a rest): at each moment the last sustained note is released with no
  onset from 50 ms before to 300 ms after, the peak 3-8 kHz level (5 ms Hann frames) in [+10, +250)
  ms over its mean in [-40, -10) ms, dB.
- Partial tracks (`scripts/partial_tracks.py SHEET`, not `evaluate`): a note sheet's partials read at
  their spectral peaks 25-700 ms after each onset, the median model-minus-training-audio dB by band
  and time (where a render's top leaves the attack, and how it decays).
Rows: the real audio (ceiling), the generation (distance to the real audio), a render of the
sounding notes by a second instrument (`scores.OTHER_INSTRUMENTS[--other-instrument]`, `musescore`
= FluidSynth with the demo soundfont, dry; `render_excerpt_notes` adapts any renderer of notes from
time 0, with a pre-roll for notes held from before the excerpt; its distance to the real audio is
the scale), and another excerpt's real audio against this excerpt's notes (chance purity and
distance). The floor generation is not scored again (it is another excerpt's `generated` row). A
renderer that cannot run (no FluidSynth) skips the scale with a one-line note. `--plots` shades the
gaps on every panel and adds the level (20 ms RMS, dBFS) of the real audio and the generation.

Report and listening test (report.py, listening.py; images from plots.py)
------------------------------------------------------------------------
`evaluate_model(model, config, EvaluateOptions(..., report_options=ReportOptions(folder, force,
command, checkpoint)))` hands its results dict and, per excerpt, a `ReportExcerpt` (notes, clips:
`generated`, `real`, `floor` and any further key, e.g. another instrument's render) to
`report.write_report`. The page shows every results entry that has a `per_excerpt` list of one item
per excerpt, so new measurements appear without page edits. Images come from `plots.excerpt_strips`
(fixed axes geometry, one colour scale per excerpt). The folder: `index.html`,
`audio/eNN_<clip>.wav` (16-bit), `img/eNN_<clip|notes>.png`, `report.json` (format
`midi2wave-report`: excerpts with identity + clip/image paths, results).
`listening.build_test` reads `report.json` of several reports (same excerpt identities) and writes
`page/` (blind: opaque clip names) and `key.json` (format `midi2wave-listening-key`: test id, seed,
systems, clips -> system, trials with sides); the page downloads `midi2wave-listening-ratings` JSON
(test id, rater, per trial: clips shown, `preference_a` in -2..2) that `score_ratings` pools.
"""

from __future__ import annotations

from ..lazy import entry_points

# entry point -> the module that defines it (never a submodule's own name: `evaluate`, `transcribe`
# and `realism` stay modules for `from midi2wave.evaluation import evaluate`)
_ENTRY_POINTS = {
    "evaluate_checkpoint": "evaluate", "evaluate_model": "evaluate", "EvaluateOptions": "evaluate",
    "format_table": "evaluate",
    "Excerpt": "excerpts", "store_excerpts": "excerpts", "midi_excerpts": "excerpts",
    "realism_scores": "scores",
    "RealismOptions": "realism", "gap_noise_db": "realism", "tonal_purity": "realism",
    "log_mel_distance": "realism", "release_jumps_db": "realism",
    "get_transcriber": "transcribe",
    "write_report": "report", "ReportOptions": "report",
    "build_test": "listening", "score_ratings": "listening",
}

__all__ = list(_ENTRY_POINTS)


__getattr__, __dir__ = entry_points(__name__, _ENTRY_POINTS)
