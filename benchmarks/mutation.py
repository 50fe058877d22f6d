"""Mutation score of the quick test tier over the code that decides answers, recorded in docs/testing.md.

    python -m benchmarks.mutation              # make mutation: about 3 hours on 2 cores
    python -m benchmarks.mutation --report     # summarize the last run again, without re-running
    python -m benchmarks.mutation --only wiring             # only the areas whose name holds "wiring"
    python -m benchmarks.mutation --only "settings from"    # one area

mutmut (configured in pyproject.toml) copies service/ and training/ into mutants/, makes one-line changes
(operators, constants, conditions, arguments) in the functions matched by SCOPE, and runs the tests that
reach each changed function with `-m "not slow"`. A mutant the tests fail on is killed; one they pass is a
survivor: either a missing test, or an equivalent mutant (no input can tell it from the original), which
EQUIVALENT lists with the reason. The score is killed / (mutants - equivalent).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from .report import update_section

DOC = Path("docs/testing.md")
# mutmut's names: module.x_function or module.xǁClassǁmethod, then __mutmut_N.
SCOPE = {
    "probabilities, labels and the input contract": [
        "service.heads.x_softmax__mutmut_*",
        "service.heads.x_sigmoid__mutmut_*",
        "service.heads.x_probabilities__mutmut_*",
        "service.runtime.xǁModelRuntimeǁprobabilities__mutmut_*",
        "service.runtime.xǁModelRuntimeǁpredict__mutmut_*",
        "service.codecs.pixels.x_validate_pixels__mutmut_*",
        "service.codecs.pixels.x_check_images__mutmut_*",
    ],
    "request decoding (/predict, /predict_bytes)": [
        "service.codecs.rows.x_pixels_from_rows__mutmut_*",
        "service.codecs.npy.*",
        "service.codecs.pixels.x_unit_range__mutmut_*",
    ],
    "request batching and per-request slicing": [
        "service.predictor.*",
        "service.bentoml_internals.xǁRequestContainerǁ*",
        "service.bentoml_internals.xǁResponseContainerǁ*",
        "service.batching.xǁBatcherǁ*",
    ],
    "image preprocessing (/predict_image)": ["service.codecs.images.*"],
    "data splits and augmentation": [
        "training.data.x_split_indices__mutmut_*",
        "training.data.x_load_mnist__mutmut_*",
        "training.data.x__to_split__mutmut_*",
        "training.data.x_binary_targets__mutmut_*",
        "training.data.x_random_offsets__mutmut_*",
        "training.data.x_shift_images__mutmut_*",
        "training.data.x_random_shift__mutmut_*",
    ],
    "the training step and checkpoint selection": [
        "training.train.x_make_loss__mutmut_*",
        "training.train.x_correct_count__mutmut_*",
        "training.train.x_accumulated_update__mutmut_*",
        "training.train.x_evaluate__mutmut_*",
        "training.train.xǁBestCheckpointǁ*",
    ],
    "export: parity gate and metadata": [
        "training.export.x_check_parity__mutmut_*",
        "training.export.x_labels_for__mutmut_*",
        "training.export.x_build_metadata__mutmut_*",
    ],
    # The wiring between the parts (issue 18): where one-line bugs passed a tier strong on each part.
    "wiring: settings from the environment, and /metadata": [
        "service.settings.*",
        "service.documents.x_model_info__mutmut_*",
    ],
    "wiring: train()'s orchestration, sizing and summary": [
        "training.train.x_train__mutmut_*",
        "training.train.x_train_epoch__mutmut_*",
        "training.train.x_epoch_record__mutmut_*",
        "training.train.x_save_progress__mutmut_*",
        "training.train.x_summarize__mutmut_*",
        "training.train.xǁFitǁ*",
        "training.train.x_make_schedule__mutmut_*",
        "training.train.x_make_optimizer__mutmut_*",
    ],
    "wiring: the CLI's flags to configs": ["training.train.x_configs_from_args__mutmut_*"],
    "wiring: the v2 answers' declared shapes": [
        "service.documents.x_model_metadata__mutmut_*",
        "service.codecs.v2.x_encode_response__mutmut_*",
    ],
}
# Survivors that no input can tell from the original (on this machine's CPU), by what the mutation did: a glob
# on the mutant's name, a regex on the mutated line, and why. Each was reviewed; a new survivor matches none.
EQUIVALENT: list[tuple[str, str, str]] = [
    (
        "*",
        r"zip\(.*(strict=(None|False)|, )\)",
        "`zip(..., strict=True)` over sequences equal in length by construction (the predictor checks the sizes "
        "against its rows first): `strict` only guards",
    ),
    (
        "service.bentoml_internals.xǁ*Containerǁ*",
        r"batch_dim: int = 1",
        "BentoML's `batch_dim` default: our containers batch along axis 0 and never read it",
    ),
    (
        "service.bentoml_internals.xǁRequestContainerǁbatches_to_batch__*",
        r"if \(len\(batches\) == 1\) and False else",
        "always concatenating: the same rows, only a copy more (the `len == 1` branch saves it)",
    ),
    (
        "training.data.x_*",
        r"device=None|\.to\(None\)|generator=generator, \)|torch\.arange\((28|n), \)|positive_digits, \)"
        r"|load_test_split\(cfg, (None)?\)",
        "where an index tensor is made: the CPU, torch's default device, either way on a CPU; on a GPU the `cuda` "
        "tier trains with augmentation and the binary head",
    ),
    (
        "training.data.x_random_offsets__*",
        r"torch\.randint\(span, ",
        "`randint(span, ...)` is `randint(0, span, ...)`: low defaults to 0",
    ),
    (
        "service.codecs.rows.x_pixels_from_rows__*",
        r"np\.asarray\(images, (dtype=None)?\)",
        "NumPy reads a list of Python floats as float64 without being told: the dtype written",
    ),
    (
        "service.codecs.pixels.x_unit_range__*",
        r"array\.astype\(None\) / UINT8_SCALE",
        "uint8 / 255 in float64, then cast to float32 by validate_pixels: equal to float32 / 255 for all 256 values",
    ),
    (
        "service.codecs.npy.x_pixels_from_base64__*",
        r'format: Literal\["raw", "npy"\] = "(XXrawXX|RAW)"',
        "any format other than 'npy' takes the raw branch; the request model allows only 'raw' and 'npy'",
    ),
    (
        "service.codecs.npy.x_pixels_from_base64__*",
        r"reshape\(-2, (NUM_PIXELS|INPUT_WIDTH)\)",
        "NumPy reads any negative size in reshape as 'the rest', like -1",
    ),
    (
        "service.codecs.npy.x_array_from_npy__*",
        r'order="(f" if fortran_order else "C|F" if fortran_order else "c)"',
        "NumPy's reshape reads the order 'f' as 'F' and 'c' as 'C'",
    ),
    (
        "service.codecs.images.x_mnist_from_image__*",
        r"top, left = \((IMAGE_SIDE|28|29) - digit\.shape\[0\]\) // [23], "
        r"\((IMAGE_SIDE|28|29) - digit\.shape\[1\]\) // [23]",
        "the glyph's first placement: centring by mass then puts it at clip(round(13.5 - its centre), 0, 28 - size) "
        "on each axis, which does not depend on where it started",
    ),
    (
        "service.codecs.images.x_mnist_from_image__*",
        r"ink = gray >= INK_THRESHOLD",
        "a pixel exactly at the threshold: float32 pixels (k / 255) never equal the float64 0.2 * max exactly",
    ),
    (
        "training.export.x_build_metadata__*",
        r"onnx\.load\(onnx_path, (load_external_data=(None|True))?\)",
        "the exported model is one self-contained file (export refuses external data): with or without loading "
        "external data, the same opset and IR version are read",
    ),
    (
        "training.export.x_build_metadata__*",
        r'o\.domain in \("", "(XXai\.onnxXX|AI\.ONNX)"\)',
        "torch's exporter names the default opset domain '' (the 'ai.onnx' alias is for other writers)",
    ),
    (
        "training.export.x_check_parity__*",
        r"InferenceSession\(onnx_path, (providers=(None|\[\"(XXCPUExecutionProviderXX|cpuexecutionprovider|"
        r"CPUEXECUTIONPROVIDER)\"\]))?\)",
        "equivalent on a machine without CUDA only: the gate's session runs on the CPU whichever provider it names "
        "(on a GPU machine this would compare CUDA's numbers; issue 10 decides the CUDA tolerance)",
    ),
    (
        "training.export.x_check_parity__*",
        r"session\.run\(None, ",
        "the graph has one output: all outputs (None) is the one asked for by name",
    ),
    (
        "training.export.x_check_parity__*",
        r'warnings\.simplefilter\("ignore", \)',
        "only which warnings are silenced while TorchScript loads",
    ),
    (
        "training.export.x_check_parity__*",
        r"if diff >= tolerance or|\(p\[:, 0\] >= 0\.5\)",
        "a difference exactly equal to the tolerance, or a probability of exactly 0.5: not reachable by a test",
    ),
    (
        "training.train.x_correct_count__*",
        r"\(logits >= 0\)\.float\(\)",
        "a logit of exactly 0.0: not reachable by a test with real weights",
    ),
    (
        "training.train.x_accumulated_update__*",
        r"optimizer\.zero_grad\(set_to_none=(None|False)\)",
        "every parameter of an MLP gets a gradient in every update, so zeroed and absent gradients give the same step",
    ),
    (
        "service.settings.xǁServiceSettingsǁfrom_env__*",
        r'or "TEXT"\)\.strip\(\)\.lower\(\)',
        "the log format's default, upper-cased: the value is lower-cased as it is read",
    ),
    (
        "service.codecs.v2.x_encode_response__*",
        r"response\.predictions\], (dtype=None)?\)",
        "the probabilities are float32 numbers already: a float64 array holds the same values, JSON writes the "
        "same digits, and the binary path casts to <f4",
    ),
    (
        "training.data.x_random_offsets__*",
        r"generator\.device if \(generator is not None\) and False else",
        "always drawing on the CPU: the same on a machine without CUDA (the `cuda` tier draws on the GPU)",
    ),
    (
        "training.train.x_train__*",
        r"load_mnist\(data_cfg, (None)?\)|\.to\(None\)|fused=device\.type == \"(XXcudaXX|CUDA)\""
        r"|torch\.Generator\(device=None\)",
        "where the data and the model are put, and whether the device is CUDA: the CPU either way on a machine "
        "without CUDA (the `cuda` tier trains on the GPU)",
    ),
    (
        "training.train.x_train__*",
        r"best_val, start_epoch = -2\.0, 0",
        "the best validation accuracy so far starts below any accuracy (0 or more): -1 and -2 alike",
    ),
    (
        "training.train.x_train__*",
        r"time\.perf_counter\(\) - last_save > SAVE_EVERY_S",
        "a clock reading exactly SAVE_EVERY_S after the last save: not reachable with a real clock",
    ),
    (
        "training.train.x_train_epoch__*",
        r"use_amp = (None|cfg\.amp or device\.type == \"cuda\"|cfg\.amp and device\.type "
        r"(!= \"cuda\"|== \"(XXcudaXX|CUDA)\"))$",
        "whether bf16 autocast is on: it is CUDA's autocast, which changes nothing on a machine without CUDA (the "
        "`cuda` tier trains with it)",
    ),
    (
        "training.train.x_train_epoch__*",
        r"generator=fit\.shuffle, (device=None)?\)|dtype=torch\.(float64|int64), (device=None)?\)",
        "where the shuffle and the sums are made: the CPU either way on a machine without CUDA",
    ),
    (
        "training.train.x_train_epoch__*",
        r"correct = torch\.zeros\(\(\), (dtype=None, )?device=device\)",
        "the correct count in float32 instead of int64: whole numbers below 2^24 are exact in float32",
    ),
    (
        "training.train.x_train_epoch__*",
        r"autocast = (None|torch\.autocast\(.*\) if .*use_amp.* else None)$|batch_size, None, fit\.count_correct",
        "the bf16 autocast context: CUDA's, which changes nothing on a machine without CUDA (the `cuda` tier "
        "trains with it)",
    ),
    (
        "training.train.x_train_epoch__*",
        r"for i in tqdm\(range\(updates\)",
        "only how the progress bar looks: its description, whether it stays, when it hides",
    ),
    (
        "training.train.x_*",
        r"(correct|loss_sum|loss) = torch\.zeros\(\(\), dtype=torch\.(float64|int64), (device=None)?\)",
        "where a running sum is made: the CPU either way on a machine without CUDA",
    ),
    (
        "training.train.x_evaluate__*",
        r"correct = torch\.zeros\(\(\), (dtype=None, )?device=split\.x\.device\)",
        "the correct count in float32 instead of int64: whole numbers below 2^24 are exact in float32",
    ),
    (
        "training.train.x_summarize__*",
        r"torch\.load\(run_dir / \"best\.pt\", (map_location=None, |map_location=fit\.device, )?"
        r"(weights_only=(True|False|None)|)\)",
        "best.pt, written by this run a moment before, holds tensors and plain values: loaded with or without "
        "weights_only (None is torch's default, True) the weights are the same; and saved from the CPU they load "
        "on the CPU without a map_location (the `cuda` tier trains on the GPU)",
    ),
    (
        "service.codecs.images.x_png_data_complete__*",
        r"while pos \+ (8 <|9 <=) len\(data\)",
        "a chunk header that ends the data has an empty body: read or not, it adds no rows",
    ),
    (
        "service.codecs.images.x_png_data_complete__*",
        r"if width > x0 and height >= y0",
        "an Adam7 pass that starts at the image's height has no rows: it adds 0 bytes either way",
    ),
    (
        "service.codecs.images.x_png_data_complete__*",
        r"PNG_CHANNELS\.get\(colour, (None|2)?\)|width = height = depth = colour = interlace = (None|1)$",
        "an unknown colour type, or no IHDR chunk: Pillow refuses such a PNG when it opens it, before this check "
        "(colour types 1, 5, 7 and 8 tried)",
    ),
    (
        "service.codecs.images.x_png_data_complete__*",
        r"decompress\(b\"\"\.join\(idat\), max\(expected, 2\)\)",
        "a PNG holds at least 2 bytes of rows (a filter byte and a pixel), so a floor of 1 or 2 is the same",
    ),
    (
        "service.codecs.images.x_to_grayscale__*",
        r"nan_to_num\(np\.asarray\(image, dtype=np\.float32\), posinf",
        "nan_to_num's `nan` default is 0.0",
    ),
    (
        "service.codecs.images.x_to_grayscale__*",
        r"nan_to_num\(np\.asarray\(image, (dtype=None)?\), nan",
        "a mode-F picture's array is float32 already",
    ),
    (
        "service.codecs.images.x_to_grayscale__*",
        r"if gray\.size else 1\.0|gray / top if top > 1\.0 else gray, 0\.0, 2\.0\)",
        "a float picture's values are at most 1 once scaled by a maximum over 1 (and an empty one has none): the "
        "upper clip and the empty picture's maximum change nothing",
    ),
    (
        "service.codecs.images.x_to_grayscale__*",
        r"Image\.new\(\"RGBA\", rgba\.size, \((256, 255, 255, 255|255, 256, 255, 255|255, 255, 256, 255|"
        r"255, 255, 255, 256)\)\)",
        "Pillow clamps channel values to 255: (256, 255, 255, 255) is white too",
    ),
]


def results() -> dict[str, str]:
    """mutant name -> status, for every mutant of the last run."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "mutmut"), "results", "--all", "true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(re.findall(r"^\s+(\S+__mutmut_\d+): (.+)$", out, re.MULTILINE))


def in_scope(name: str, areas: list[str] | None = None) -> str | None:
    """The area of SCOPE (of `areas`, when given) a mutant belongs to, or None."""
    chosen = {area: SCOPE[area] for area in areas or SCOPE}
    return next((area for area, globs in chosen.items() if any(fnmatch.fnmatch(name, g) for g in globs)), None)


def areas_named(words: list[str] | None) -> list[str]:
    """The areas of SCOPE whose name holds any of `words` (all of them for None); an unknown word is an error."""
    if not words:
        return list(SCOPE)
    for word in words:
        if not any(word in area for area in SCOPE):
            raise SystemExit(f"--only: no area of SCOPE holds {word!r}; areas: {'; '.join(SCOPE)}")
    return [area for area in SCOPE if any(word in area for word in words)]


def diff_of(name: str) -> list[str]:
    """The lines the mutant removed (-) and added (+)."""
    mutmut = str(Path(sys.executable).parent / "mutmut")
    shown = subprocess.run([mutmut, "show", name], capture_output=True, text=True).stdout
    return [line for line in shown.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def why_equivalent(name: str, diff: list[str]) -> str | None:
    added = "\n".join(line[1:] for line in diff if line.startswith("+"))
    for glob, pattern, why in EQUIVALENT:
        if fnmatch.fnmatch(name, glob) and re.search(pattern, added):
            return why
    return None


def report(areas: list[str] | None = None) -> str:
    areas = areas or list(SCOPE)
    statuses = {name: status for name, status in results().items() if in_scope(name, areas)}
    killed = {"killed", "timeout", "segfault"}  # a mutant that hangs or crashes the tests is caught too
    survivors = sorted(n for n, s in statuses.items() if s not in killed and s != "not checked")
    unchecked = [n for n, s in statuses.items() if s == "not checked"]
    diffs = {n: diff_of(n) for n in survivors}
    reasons = {n: why for n in survivors if (why := why_equivalent(n, diffs[n]))}
    equivalent = [n for n in survivors if n in reasons]
    missed = [n for n in survivors if n not in reasons]
    caught = sum(s in killed for s in statuses.values())
    total = len(statuses) - len(unchecked)
    score = caught / max(1, total - len(equivalent))
    lines = [
        "| area | mutants | killed | survived | not run |",
        "|---|---:|---:|---:|---:|",
    ]
    for area in areas:
        names = [n for n in statuses if in_scope(n, areas) == area and statuses[n] != "not checked"]
        k = sum(statuses[n] in killed for n in names)
        not_run = sum(in_scope(n, areas) == area for n in unchecked)
        lines.append(f"| {area} | {len(names)} | {k} | {len(names) - k} | {not_run} |")
    by_status = Counter(statuses.values())
    lines += [
        "",
        f"**{caught} of {total - len(equivalent)} non-equivalent mutants killed: {score:.1%}** "
        f"({total} mutants run, {len(equivalent)} equivalent, {len(missed)} survivors not explained"
        + (f"; {len(unchecked)} mutants not run, outside the figure" if unchecked else "")
        + f"; statuses: {', '.join(f'{s} {c}' for s, c in sorted(by_status.items()))}).",
    ]
    if missed:
        lines += [
            "",
            "Survivors not explained (each a missing test, or an equivalent mutant to add to EQUIVALENT):",
            "",
        ]
        lines += [f"- `{n}` ({statuses[n]}): `{diffs[n]}`" for n in missed]
    if equivalent:
        lines += ["", "Equivalent mutants, by reason:", ""]
        for why in dict.fromkeys(reasons.values()):
            names = [n for n in equivalent if reasons[n] == why]
            lines.append(f"- {why} ({len(names)}): " + ", ".join(f"`{n.split('.', 1)[1]}`" for n in names))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.mutation", description=__doc__.split("\n\n")[0])
    p.add_argument("--report", action="store_true", help="summarize the last run without running mutmut")
    p.add_argument("--max-children", type=int, default=os.cpu_count() or 1, help="mutants tested in parallel")
    p.add_argument(
        "--only",
        nargs="+",
        metavar="WORDS",
        help="run and report only the areas whose name holds one of WORDS (recorded in its own section)",
    )
    args = p.parse_args(argv)
    areas = areas_named(args.only)
    if not os.environ.get("MNIST_ROOT"):
        print("warning: MNIST_ROOT is not set; tests that need MNIST will skip and kill nothing", file=sys.stderr)
    if not args.report:
        mutmut = str(Path(sys.executable).parent / "mutmut")
        globs = [g for area in areas for g in SCOPE[area]]
        done = subprocess.run([mutmut, "run", "--max-children", str(args.max_children), *globs], check=False)
        if done.returncode != 0:
            print(f"mutmut run failed (exit {done.returncode}); docs/testing.md left as it was", file=sys.stderr)
            return done.returncode
    text = report(areas)
    print(text)
    if args.only:  # a part of the scope: its own section, beside the whole run's
        command = "python -m benchmarks.mutation --only " + " ".join(repr(w) if " " in w else w for w in args.only)
        update_section("mutation-only", f"Areas: {'; '.join(areas)}.\n\n{text}", command, path=DOC)
    else:
        update_section("mutation", text, "make mutation  # python -m benchmarks.mutation", path=DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
