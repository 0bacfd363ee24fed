"""`flowomni data ...`: build, import, check, featurize and augment corpora."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    s = sub.add_parser("synth", help="build the synthetic spoken-QA corpus (espeak-ng + piper, offline)")
    from flowomni.data.synth import SynthConfig

    d = SynthConfig()
    s.add_argument("out_dir", type=Path)
    s.add_argument("--size", type=int, default=d.size, help=f"train+valid+test items (default {d.size})")
    s.add_argument("--seed", type=int, default=d.seed)
    s.add_argument("--workers", type=int, default=0, help="processes (default: one per CPU core)")
    s.add_argument("--valid-frac", type=float, default=d.valid_frac)
    s.add_argument("--test-frac", type=float, default=d.test_frac)
    s.add_argument("--piper-share", type=float, default=d.piper_share, help="share of questions in the piper voice")
    s.add_argument(
        "--accent-share",
        type=float,
        default=d.accent_share,
        help="share of espeak training questions spoken with a synthetic accent (data/accents.py)",
    )
    s.add_argument(
        "--no-voice-sets", action="store_true", help="skip the test_seen_voices and test_shifted_voices manifests"
    )
    s.add_argument(
        "--text-size",
        type=int,
        default=d.text_size,
        help="written training questions in train_text.jsonl (default %(default)s)",
    )
    s.add_argument(
        "--tts-size",
        type=int,
        default=d.tts_size,
        help="training questions' texts spoken in the answer voice, train_tts.jsonl: TTS practice "
        "on many more sentences than the answers (default %(default)s)",
    )
    s.add_argument(
        "--train-items",
        type=int,
        default=d.train_items,
        metavar="N",
        help="build only the first N training items of the --size corpus (0: all); valid and test "
        "are the full build's: a shorter run on the same corpus",
    )
    s.add_argument(
        "--taught-phrases",
        action="store_true",
        help="also train on the templates that teach operator phrases the held-out ones use ('take away')",
    )
    s.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="MANIFEST",
        help="build just these manifests, the same items a full build writes, e.g. "
        "'--only test test_seen_voices test_shifted_voices' to evaluate without the training corpus",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("librispeech", help="LibriSpeech-style folders -> utterance manifest (ASR/TTS)")
    s.add_argument("root", type=Path)
    s.add_argument("out_manifest", type=Path)
    s.add_argument("--keep-case", action="store_true", help="keep transcripts as they are (default: sentence case)")
    s.add_argument("--check-audio", action="store_true", help="decode every file now, skipping bad ones")
    s.add_argument("--max-items", type=int, default=0)

    s = sub.add_parser("hf", help="export a local Hugging Face dataset (VoiceAssistant-400K style) to WAV + manifests")
    from flowomni.data.hf import HFColumns

    c = HFColumns()
    s.add_argument("path", type=Path, help="save_to_disk folder or folder of data files (local only)")
    s.add_argument("out_dir", type=Path)
    s.add_argument("--question-col", default=c.question_text)
    s.add_argument("--answer-col", default=c.answer_text)
    s.add_argument("--question-audio-col", default=c.question_audio)
    s.add_argument("--answer-audio-col", default=c.answer_audio)
    s.add_argument("--id-col", default=c.id, help="column with item ids (default: <split>-<row>)")
    s.add_argument("--split", action="append", default=None, help="only this split (repeatable)")
    s.add_argument("--max-items", type=int, default=0, help="per split")

    s = sub.add_parser("features", help="precompute the log-mel feature cache for manifests")
    s.add_argument("manifests", type=Path, nargs="*")
    s.add_argument("--cache", type=Path, default=None, help="cache folder (default .cache/features)")
    s.add_argument(
        "--config",
        choices=["input", "answer", "both"],
        default="both",
        help="input: question audio, encoder features; answer: answer audio, speaker features",
    )
    s.add_argument(
        "--from-config",
        type=Path,
        default=None,
        metavar="EXPERIMENT_YAML",
        help="take mel configs, cache folder and (if none given) manifests from a training config",
    )
    s.add_argument("--workers", type=int, default=0)

    s = sub.add_parser("augment", help="noisy/faster/quieter copy of a manifest's question audio")
    s.add_argument("manifest", type=Path)
    s.add_argument("out_dir", type=Path)
    s.add_argument("--noise-snr", type=float, default=None, metavar="DB")
    s.add_argument("--noise-kind", choices=["white", "pink", "babble"], default="white")
    s.add_argument("--speed", type=float, default=1.0, help="e.g. 0.9 (slower) or 1.2 (faster)")
    s.add_argument("--gain-db", type=float, default=0.0)
    s.add_argument("--seed", type=int, default=0)

    s = sub.add_parser("check", help="validate every audio file of manifests and print a summary")
    s.add_argument("manifests", type=Path, nargs="+")
    s.add_argument("--max-seconds", type=float, default=None, help="flag clips longer than this")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    action = {
        "synth": _synth,
        "librispeech": _librispeech,
        "hf": _hf,
        "features": _features,
        "augment": _augment,
        "check": _check,
    }[args.data_command]
    try:
        return action(args)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"flowomni data {args.data_command}: {e}", file=sys.stderr)
        return 2


def _synth(args: argparse.Namespace) -> int:
    from flowomni.data.synth import SynthConfig, build, format_report

    cfg = SynthConfig(
        size=args.size,
        seed=args.seed,
        workers=args.workers,
        valid_frac=args.valid_frac,
        test_frac=args.test_frac,
        piper_share=args.piper_share,
        accent_share=args.accent_share,
        voice_sets=not args.no_voice_sets,
        text_size=args.text_size,
        train_items=args.train_items,
        tts_size=args.tts_size,
        taught_phrases=args.taught_phrases,
        only=tuple(args.only),
    )
    report = build(args.out_dir, cfg, progress=not args.quiet)
    print(format_report(report, args.out_dir))
    return 0


def _librispeech(args: argparse.Namespace) -> int:
    from flowomni.data.librispeech import write_librispeech_manifest

    items, stats = write_librispeech_manifest(
        args.root, args.out_manifest, keep_case=args.keep_case, check_audio=args.check_audio, max_items=args.max_items
    )
    print(f"{args.out_manifest}: {len(items)} utterances; {stats.summary()}")
    return 0


def _hf(args: argparse.Namespace) -> int:
    from flowomni.data.hf import HFColumns, export_hf

    cols = HFColumns(args.question_col, args.answer_col, args.question_audio_col, args.answer_audio_col, args.id_col)
    written, stats = export_hf(args.path, args.out_dir, cols, splits=args.split, max_items=args.max_items)
    for split, path in written.items():
        print(f"{split}: {path}")
    print(stats.summary())
    return 0


def _data_paths(path: Path) -> dict[str, str]:
    """The feature cache and manifests an experiment YAML's `data` section names ("" if none)."""
    from flowomni.config import ConfigError, read_yaml

    data = read_yaml(path).get("data") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: data must be a mapping, got {data!r}")
    out = {}
    for key in ("cache_dir", "train_manifest", "valid_manifest"):
        value = data.get(key) or ""
        if not isinstance(value, str):
            raise ConfigError(f"{path}: data.{key} must be a path, got {value!r}")
        out[key] = value
    return out


def _features(args: argparse.Namespace) -> int:
    from flowomni.audio.mel import answer_mel_config, input_mel_config
    from flowomni.data.features import FeatureCache
    from flowomni.data.manifest import SkipStats, read_manifest

    in_cfg, out_cfg, cache, manifests = input_mel_config(), answer_mel_config(), args.cache, list(args.manifests)
    if args.from_config:  # (read by section: the data layer does not import the experiment's config)
        from flowomni.audio.mel import MelConfig
        from flowomni.config import load_config

        in_cfg = load_config(MelConfig, args.from_config, section="model.input_mel", defaults=in_cfg)
        out_cfg = load_config(MelConfig, args.from_config, section="model.output_mel", defaults=out_cfg)
        data = _data_paths(args.from_config)
        cache = cache or (Path(data["cache_dir"]) if data["cache_dir"] else None)
        manifests = manifests or [Path(data[k]) for k in ("train_manifest", "valid_manifest") if data[k]]
    if not manifests:
        raise ValueError("no manifests given")
    cache = cache or Path(".cache/features")
    questions, answers, stats = set(), set(), SkipStats()
    for m in manifests:
        items, s = read_manifest(m)
        stats.update(s)
        questions |= {it.question_audio for it in items if it.question_audio}
        answers |= {it.answer_audio for it in items if it.answer_audio}
    t0 = time.perf_counter()
    jobs = {"input": (in_cfg, questions), "answer": (out_cfg, answers)}
    for name, (cfg, paths) in jobs.items():
        if args.config in (name, "both"):
            fc = FeatureCache(cache, cfg)
            stats.update(fc.precompute(sorted(paths), workers=args.workers))
            print(f"{name} features ({len(paths)} files) in {fc.dir}")
    print(f"done in {time.perf_counter() - t0:.1f} s; {stats.summary()}")
    return 0


def _augment(args: argparse.Namespace) -> int:
    from flowomni.data.augment import AugmentSpec, augment_manifest

    spec = AugmentSpec(args.noise_snr, args.noise_kind, args.speed, args.gain_db)
    if spec.label == "clean":
        raise ValueError("nothing to do: give --noise-snr, --speed or --gain-db")
    path, items, stats = augment_manifest(args.manifest, args.out_dir, spec, seed=args.seed)
    print(f"{path}: {len(items)} items ({spec.label}); {stats.summary()}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from flowomni.data.check import check_manifest

    bad = 0
    for m in args.manifests:
        report = check_manifest(m, max_seconds=args.max_seconds)
        print(report.format(m))
        bad += report.problems.total
    return 1 if bad else 0
