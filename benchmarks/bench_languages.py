"""The tiny CLIP in six languages: zero-shot accuracy per language, cross-language search,
and prompt ensembling per language.

    python benchmarks/bench_languages.py [--weights FILE] [--json]

Labels: those `utils.captions.label` writes ("une étoile violette") and the hand-written
ones of tests/test_captions.py, which no training pattern produces ("l'étoile violette").
Pass --weights to measure another tiny-shapes file (an older one, to compare).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from utils import captions
from utils import multilingual as ml
from utils.tinyclip import TINY_CONFIG, build_model, evaluate

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]
from test_captions import NATURAL_LABELS  # noqa: E402

from course_tools.languages import cross_language_retrieval, language_accuracy  # noqa: E402


def load(weights: str | None):
    """The bundled tiny CLIP, or the same architecture with the weights of `weights`."""
    if weights is None:
        from utils.models import load_clip

        return load_clip("tiny-shapes", device="cpu", verbose=False).model
    from safetensors.torch import load_file

    model = build_model(TINY_CONFIG)
    model.load_state_dict({k: v.float() for k, v in load_file(weights).items()})
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="a tiny-shapes .safetensors (default: the bundled one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.weights)
    result = {
        "labels": language_accuracy(model, n=1000, seed=1234),
        "natural_labels": language_accuracy(model, n=1000, seed=2025, splits=("test",), label_sets=NATURAL_LABELS),
        "english_evaluate": {k: v["colour+shape"] for k, v in evaluate(model).items()},
        "search_en_to_zh": cross_language_retrieval(model, "en", "zh"),
        "search_zh_to_en": cross_language_retrieval(model, "zh", "en"),
        "nearest_english_label_is_translation": {lang: ml.translation_accuracy(model, lang)
                                                 for lang in captions.LANGUAGES if lang != "en"},
        "load_average": os.getloadavg()[0], "cpu_count": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'':6}{'labels, seen':>14}{'held-out':>10}{'hand-written':>14}")
    for lang in captions.LANGUAGES:
        row = result["labels"][lang]
        print(f"{lang:6}{row['test']:>14.1%}{row['heldout']:>10.1%}{result['natural_labels'][lang]['test']:>14.1%}")
    print(f"cross-language search: en -> zh {result['search_en_to_zh']:.1%}, zh -> en {result['search_zh_to_en']:.1%}")
    print(f"English evaluate(): {result['english_evaluate']['test']:.1%} seen, "
          f"{result['english_evaluate']['heldout']:.1%} held-out; load average {result['load_average']:.2f}")


if __name__ == "__main__":
    main()
