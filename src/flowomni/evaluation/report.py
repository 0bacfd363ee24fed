"""The evaluation report: Markdown tables, PNG plots, and JSON with every number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flowomni.data.skills import HELD_OUT_FACTS
from flowomni.evaluation.intervals import paired_accuracy_difference, paired_wer_difference
from flowomni.evaluation.text import wer


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def _ci(row: dict[str, Any], key: str) -> str:
    """A score with its 95 % interval, e.g. "81.0% [77.3, 84.5]"."""
    ci = row.get(f"{key}_ci95")
    if row.get(key) is None or not ci:
        return _pct(row.get(key))
    return f"{_pct(row.get(key))} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def summary_table(results: dict[str, dict[str, Any]]) -> str:
    head = (
        "| model | accuracy (target skills) | accuracy (all) | text WER | speech WER vs reference "
        "| vs reference (target skills) | speech WER vs own text | spoken answers | first packet (ms, median) "
        "| RTF | answer length (s) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for name, r in results.items():
        c, lat = r["clean"], r["latency"]
        rows.append(
            f"| {name} | {_ci(c, 'accuracy_target')} | {_ci(c, 'accuracy')} | {_pct(c.get('text_wer'))} "
            f"| {_ci(c, 'speech_wer_vs_reference')} | {_ci(c, 'speech_wer_vs_reference_target')} "
            f"| {_ci(c, 'speech_wer_vs_text')} | {_pct(c.get('spoken_share'))} "
            f"| {_num(lat.get('first_packet_ms_median'))} | {_num(lat.get('rtf_median'), '{:.3f}')} "
            f"| {_num((c.get('answer_seconds') or {}).get('mean'), '{:.2f}')} |"
        )
    return head + "\n".join(rows) + "\n"


SWEEPS = [  # (results key, condition field, column label, section title)
    ("noise", "snr_db", "SNR (dB)", "Noise on the question"),
    ("speed", "speed", "speed", "Question speed"),
    ("text_input", "input", "question", "Written questions (text in, speech out)"),
    ("voices", "voices", "voices", "The same questions in other voices"),
]


def sweep_table(results: dict[str, dict[str, Any]], sweep: str, key: str, label: str) -> str:
    names = list(results)
    cols = " | ".join(f"{n}: accuracy (target) | {n}: speech WER vs reference" for n in names)
    head = f"| {label} | {cols} |\n"
    head += "|---" * (1 + 2 * len(names)) + "|\n"
    conds = [row[key] for row in results[names[0]]["sweeps"].get(sweep, [])]
    lines = []
    for i, cond in enumerate(conds):
        cells = []
        for n in names:
            row = results[n]["sweeps"][sweep][i]
            cells += [_ci(row, "accuracy_target"), _ci(row, "speech_wer_vs_reference")]
        lines.append(f"| {cond} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def conditions(result: dict[str, Any]) -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(label, scores, per-item rows) of every condition a model was scored on, clean first."""
    out = [("clean", result["clean"], result.get("rows", []))]
    for sweep, key, label, _ in SWEEPS:
        for row in result.get("sweeps", {}).get(sweep, []):
            named = key in ("input", "voices")  # their values are names already
            out.append((str(row[key]) if named else f"{label} {row[key]}", row, row.get("rows", [])))
    return out


def paired_table(results: dict[str, dict[str, Any]]) -> str:
    """Each later model against the first, condition by condition, on the items both answered:
    target-skill accuracy and speech WER vs reference, with the paired 95 % interval of the
    difference (first - other). A difference counts only where its interval excludes zero.
    Items whose reference answer differs between the two results (the corpus reworded an answer
    between two evals) are left out and counted: the two would not be judged alike."""
    a_name, *others = list(results)
    out = []
    for other in others:
        out.append(
            f"| condition | items | accuracy {a_name} | accuracy {other} | {a_name} - {other} [95 %] "
            f"| speech WER {a_name} | speech WER {other} | {a_name} - {other} [95 %] |\n" + "|---" * 8 + "|\n"
        )
        theirs = {label: rows for label, _, rows in conditions(results[other])}
        reworded = 0
        for label, _, rows in conditions(results[a_name]):
            by_id = {r["id"]: r for r in theirs.get(label, [])}
            both = [(r, by_id[r["id"]]) for r in rows if r["id"] in by_id and r["skill"] != HELD_OUT_FACTS]
            pairs = [(r, o) for r, o in both if r["reference"] == o["reference"]]
            reworded = max(reworded, len(both) - len(pairs))
            if not pairs:
                continue
            a, b = [p[0] for p in pairs], [p[1] for p in pairs]
            acc = paired_accuracy_difference([r["exact"] for r in a], [r["exact"] for r in b])
            acc_a, acc_b = (sum(r["exact"] for r in x) / len(x) for x in (a, b))
            speech = "| - | - | - |"  # a text-only eval (--text-only) has no speech to compare
            if all(any(r["audio_s"] > 0 for r in x) for x in (a, b)):
                refs = [r["reference"] for r in a]
                wer_a, wer_b = (wer(refs, [r["heard"] for r in x]) for x in (a, b))
                dw = paired_wer_difference(refs, [r["heard"] for r in a], [r["heard"] for r in b])
                speech = f"| {_pct(wer_a)} | {_pct(wer_b)} | {_diff(dw)} |"
            out.append(f"| {label} | {len(pairs)} | {_pct(acc_a)} | {_pct(acc_b)} | {_diff(acc)} {speech}\n")
        if reworded:
            out.append(f"\n({reworded} items a condition left out: their reference answers differ.)\n\n")
    return "".join(out)


def condition_gaps(result: dict[str, Any]) -> str:
    """One model's accuracy in each condition minus its accuracy on the clean questions, paired
    by question text (voice sets ask the same questions under other ids), with the 95 % paired
    interval: how much hearing loses in noise or in other voices."""

    def right(rows: list[dict[str, Any]]) -> dict[str, bool]:
        return {r["question"]: r["exact"] for r in rows if r["skill"] != HELD_OUT_FACTS}

    (_, _, clean), *others = conditions(result)
    base = right(clean)
    lines = []
    for label, _, rows in others:
        theirs = right(rows)
        keys = [q for q in base if q in theirs]
        if keys:
            d = paired_accuracy_difference([theirs[q] for q in keys], [base[q] for q in keys])
            lines.append(f"| {label} | {len(keys)} | {_diff(d)} |\n")
    if not lines:
        return ""
    return "| condition | questions | accuracy minus clean [95 %] |\n|---|---|---|\n" + "".join(lines)


def _diff(d: dict[str, float]) -> str:
    return f"{100 * d['difference']:+.1f} [{100 * d['ci95_low']:+.1f}, {100 * d['ci95_high']:+.1f}]"


def skill_table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    skills = sorted({s for r in results.values() for s in r["clean"].get("accuracy_by_skill", {})})
    head = "| skill | " + " | ".join(names) + " |\n" + "|---" * (1 + len(names)) + "|\n"
    lines = [
        f"| {s} | " + " | ".join(_pct(results[n]["clean"]["accuracy_by_skill"].get(s)) for n in names) + " |"
        for s in skills
    ]
    return head + "\n".join(lines) + "\n"


def plot_sweeps(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, r in results.items():
        noise = r["sweeps"].get("noise", [])
        if not noise:
            continue
        snr = ["clean"] + [f"{row['snr_db']:g}" for row in noise]
        wer_ = [r["clean"].get("speech_wer_vs_reference")] + [row.get("speech_wer_vs_reference") for row in noise]
        acc = [r["clean"].get("accuracy")] + [row.get("accuracy") for row in noise]
        axes[0].plot(snr, [100 * (w if w is not None else float("nan")) for w in wer_], "o-", label=name)
        axes[1].plot(snr, [100 * a for a in acc], "o-", label=name)
    axes[0].set(title="spoken answer WER vs question SNR", xlabel="SNR (dB)", ylabel="WER (%)")
    axes[1].set(title="answer accuracy vs question SNR", xlabel="SNR (dB)", ylabel="exact match (%)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(
    results: dict[str, dict[str, Any]],
    examples: dict[str, list[dict[str, Any]]],
    out_dir: Path,
    command: str,
    notes: str = "",
) -> Path:
    """reports/<name>/: report.md, results.json, sweeps PNG, mel PNGs and example WAVs."""
    from flowomni.audio.io import save_audio
    from flowomni.model.plots import plot_mels

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    plot_sweeps(results, out_dir / "wer_vs_snr.png")
    redecoded = ", ".join(f"{n}: {r.get('asr_redecoded', 0)}" for n, r in results.items())
    beams = sorted({r.get("config", {}).get("asr_beam", 1) for r in results.values()})
    decoding = "greedy (beam 1)" if beams == [1] else "with beam " + " / ".join(map(str, beams))
    listeners = sorted({r.get("config", {}).get("asr_model") or "Whisper tiny.en" for r in results.values()})
    md = [f"# Evaluation report\n\nCommand:\n\n```\n{command}\n```\n"]
    if notes:
        md.append(notes + "\n")
    md += [
        "## Clean test questions\n",
        summary_table(results),
        f"\nSpeech WER: the independent ASR ({' / '.join(listeners)}, decoding {decoding}) transcribes the "
        "spoken answer; against the reference answer it measures what a listener gets, against the "
        "model's own text it measures text-speech consistency. Silent answers count as fully deleted. "
        "The target-skill columns leave out the held-out world facts, which no model can infer. "
        "Transcripts where Whisper looped were decoded again with beam search and a repetition penalty "
        f"({redecoded}; flowomni.evaluation.asr).\n",
        "\n### Accuracy by skill\n",
        skill_table(results),
    ]
    run = [sw for sw in SWEEPS if all(r["sweeps"].get(sw[0]) for r in results.values())]  # not run: no section
    if run:
        md.append("\n## Robustness\n")
    if any(sw[0] == "noise" for sw in run):
        md.append("\n![WER vs SNR](wer_vs_snr.png)\n")
    for sweep, key, label, title in run:
        md += [f"\n### {title}\n", sweep_table(results, sweep, key, label)]
    gaps = {name: condition_gaps(r) for name, r in results.items()}
    if any(gaps.values()):
        md.append(
            "\n### Each condition against the clean questions\n\nThe same questions, paired by their text "
            "(held-out world facts left out): accuracy in the condition minus accuracy on the clean questions, "
            "with its 95 % paired bootstrap interval.\n"
        )
        md += [f"\n**{name}**\n\n{table}" for name, table in gaps.items() if table]
    paired = paired_table(results) if len(results) > 1 else ""
    if paired:
        md += [
            "\n## Paired differences\n",
            "\nThe same questions answered by both models, condition by condition (held-out world facts left "
            "out): the difference of the first model minus the other, with its 95 % paired bootstrap interval "
            "over items. A difference whose interval includes zero is not a difference these questions can "
            "show.\n\n",
            paired,
        ]
    md.append("\n## Examples\n")
    for name, exs in examples.items():
        for i, ex in enumerate(exs):
            stem = f"{name}_{i}"
            plot_mels({"generated answer": ex["mel"]}, out_dir / f"{stem}_mel.png")
            if ex.get("audio") is not None:
                save_audio(out_dir / f"{stem}.wav", ex["audio"], ex["sample_rate"])
            md.append(
                f"**{name}** — Q: {ex['question']}  \nA (text): {ex['text']}  \nA (heard by ASR): "
                f"{ex['heard']}  \n![mel]({stem}_mel.png) [audio]({stem}.wav)\n"
            )
    path = out_dir / "report.md"
    path.write_text("\n".join(md))
    return path
