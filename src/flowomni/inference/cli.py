"""`flowomni chat`: ask by voice (a WAV file) or text; hear and read the answer as it comes."""

from __future__ import annotations

import argparse
import json
import sys

from flowomni.config import ConfigError, add_set_option, apply_overrides, from_dict
from flowomni.inference.limits import MAX_QUESTION_SECONDS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", nargs="?", help="question audio file (any rate; mixed to mono)")
    p.add_argument("--text", help="ask in text instead of audio")
    p.add_argument("-o", "--output", help="write the spoken answer here (WAV)")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped model)")
    p.add_argument("--vocoder", default=None, help="override the vocoder: griffin-lim or a vocoder folder")
    p.add_argument("--no-speech", action="store_true", help="answer in text only")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    p.add_argument("--seed", type=int, default=0)
    add_set_option(p, "generation knobs, e.g. --set flow_steps=4 --set text_temperature=0.7 --set cfg_scale=1.5")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=MAX_QUESTION_SECONDS,
        help=f"refuse longer question audio (default {MAX_QUESTION_SECONDS:g}, as the server; the cost "
        "of an answer grows about quadratically with the question's length)",
    )


def run(args: argparse.Namespace) -> int:

    from flowomni.audio.io import AudioError, audio_duration, save_audio
    from flowomni.checkpoint import CheckpointError
    from flowomni.inference.decoder import GenerationConfig
    from flowomni.inference.engine import Engine, Received, TextDelta

    if (args.question is None) == (args.text is None):
        print("flowomni chat: give a question audio file or --text (exactly one)", file=sys.stderr)
        return 2
    if args.question is not None:  # from the header, before the model is loaded
        try:
            seconds = audio_duration(args.question)
        except AudioError as e:
            print(f"flowomni chat: {e}", file=sys.stderr)
            return 2
        if not seconds <= args.max_seconds:
            print(
                f"flowomni chat: {args.question}: question of {seconds:.1f} s is longer than the limit of "
                f"{args.max_seconds:g} s (--max-seconds raises it)",
                file=sys.stderr,
            )
            return 2
    try:
        gen = from_dict(GenerationConfig, apply_overrides({"seed": args.seed}, args.overrides), "generation")
        engine = Engine.load(args.checkpoint, vocoder=args.vocoder, device=args.device, gen=gen)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"flowomni chat: {e}", file=sys.stderr)
        return 2
    engine.warm_up()  # first-call costs before the question, so its timings are those of any answer
    speak = not args.no_speech
    got = Received()
    try:
        for ev in engine.respond(args.question, text=args.text, speak=speak):
            if isinstance(got.add(ev), TextDelta) and not args.json:
                print(ev.text, end="", flush=True)
    except (AudioError, ValueError) as e:
        print(f"flowomni chat: {e}", file=sys.stderr)
        return 2
    done = got.final()
    if args.output and got.chunks:
        save_audio(args.output, got.audio(), engine.vocoder.sample_rate)
    t = done.timings
    if args.json:
        print(
            json.dumps(
                {
                    "text": done.text,
                    "first_audio_ms": t.get("first_audio_ms"),
                    "rtf": t["rtf"],
                    "audio_seconds": done.audio_seconds,
                    "timings": t,
                    "output": args.output,
                }
            )
        )
    else:
        print()
        if speak:
            first = t.get("first_audio_ms")
            print(
                f"[{done.audio_seconds:.2f} s of speech, first audio {first:.0f} ms, RTF {t['rtf']:.3f}"
                + (f", written to {args.output}]" if args.output else "]")
                if first is not None
                else "[no speech was generated]",
                file=sys.stderr,
            )
    return 0
