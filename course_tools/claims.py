"""Measured numbers, each with one source: `reports/claims.json`.

A claim is one number the text states: `{"value": 0.91, "unit": "fraction", "measured_by":
"python -m course_tools train dalle --seed 0", "measured_on": "2 CPUs, ... 2026-12-06", "written_by":
"course_tools/claims.py"}`. The scripts that measure write their claims with `record()`; nobody
types them. The text reads them back:

- lesson sources (`lessons/src/*.md`) write `{{claim KEY}}` or `{{claim KEY:SPEC}}`, expanded
  by the lesson builder with the page language's number format (Babel): `{{claim t:.1f}}` is
  "20.5" in English, "20,5" in French; `{{claim acc:.1%}}` is "91.0%", "91,0 %";
- README.md, which is not built, follows each measured number by a marker,
  `20.5 s<!-- claim:t:.1f -->`, and `tests/test_claims.py` checks the number equals the claim.

SPEC is `.Nf` (N decimals), `.N%` (a fraction as a percentage with N decimals), either with a
leading `+` to sign a difference (`+.1f`: "+2.3", "-0.1"), or `,d` (an integer with thousands
separators); without it the number is written as stored.

    python -m course_tools.claims                 # list the claims
    python -m course_tools.claims --from-assets   # import the bundled models' training metrics
    python -m course_tools.claims --measure tiny-clip   # the bundled tiny CLIP's zero-shot accuracy
    python -m course_tools.claims --measure logit-scale # the bundled tiny CLIP's learned scale s
    python -m course_tools.claims --measure ensembling  # bare name, one template, ensemble: measures.py
    python -m course_tools.claims --measure search      # notebook 03's recall@k, tiny CLIP
    python -m course_tools.claims --measure NAME        # pil-shapes, vq-roundtrip, reranker,
                                                  # tiny-generate, model-size, vit-speed: measures.py
    python -m course_tools.claims --import reports/bench_languages.json --prefix languages \
        --measured-by "python benchmarks/bench_languages.py --json" --on "2 CPUs, 2026-12-07"
                                                  # every number of a script's saved --json output
"""

from __future__ import annotations

import argparse
import decimal
import json
import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from course_tools import measures
from utils.i18n import BABEL_LOCALES

try:
    import fcntl
except ImportError:  # Windows: no file locks; run one measuring script at a time
    fcntl = None

ROOT = Path(__file__).resolve().parent.parent
CLAIMS_PATH = ROOT / "reports" / "claims.json"
CLAIM_MACRO = re.compile(r"\{\{\s*claim\s+([A-Za-z0-9_.@\-]+)(?::([^}\s]+))?\s*\}\}")
README_MARKER = re.compile(r"<!--\s*claim:([A-Za-z0-9_.@\-]+)(?::([^\s>]+))?\s*-->")
_SPEC = re.compile(r"^(?:(\+?)\.(\d)([f%])|,d)$")


def load_claims(path: Path | None = None) -> dict[str, dict]:
    """All claims, {} when the file does not exist yet."""
    path = Path(path or CLAIMS_PATH)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def measured_on() -> str:
    """The machine and the date, for a claim's `measured_on`."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpus} CPUs, {platform.platform(terse=True)}, load average {load:.1f}, "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")


def record(claims: dict[str, dict], measured_by: str, written_by: str, on: str | None = None,
           path: Path | None = None) -> Path:
    """Merge `claims` ({key: (value, unit)} or {key: {"value", "unit"}}) into the claims file.

    Other keys keep their values; the file is written sorted, so a rerun that measures the same
    numbers changes nothing. `written_by` is the script (repository path) that calls this."""
    path = Path(path or CLAIMS_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:  # one writer at a time (POSIX): no lost claims
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        return _merge(claims, measured_by, written_by, on or measured_on(), path)


def _merge(claims: dict[str, dict], measured_by: str, written_by: str, on: str, path: Path) -> Path:
    found = json.loads(path.read_text(encoding="utf-8") or "{}")
    for key, claim in claims.items():
        if not re.fullmatch(r"[A-Za-z0-9_.@\-]+", key):
            raise ValueError(f"claim key {key!r}: use letters, digits, '.', '-', '_' and '@'")
        value, unit = (claim["value"], claim["unit"]) if isinstance(claim, dict) else claim
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"claim {key!r}: value {value!r} is not a number")
        entry = {"value": value, "unit": unit, "measured_by": measured_by, "measured_on": on,
                 "written_by": written_by}
        if isinstance(claim, dict) and "source" in claim:
            entry["source"] = claim["source"]
        found[key] = entry
    path.write_text(json.dumps(dict(sorted(found.items())), indent=1, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path


def format_number(value: float, spec: str | None, lang: str = "en") -> str:
    """`value` written for `lang` with Babel: `.1f` 0.876 -> "0.9" (en), "0,9" (fr).

    Halves round up, as a reader does by hand (0.8765 -> 87.7%), not to even as Babel does."""
    with decimal.localcontext() as context:
        context.rounding = decimal.ROUND_HALF_UP
        return _format(value, spec, lang)


def _format(value: float, spec: str | None, lang: str) -> str:
    from babel import Locale
    from babel.numbers import (
        format_decimal,
        get_minus_sign_symbol,
        get_plus_sign_symbol,
        parse_pattern,
    )

    locale = Locale.parse(BABEL_LOCALES.get(lang, lang))
    if not spec:
        return format_decimal(value, locale=locale)
    match = _SPEC.match(spec)
    if not match:
        raise ValueError(f"number format {spec!r}: use .Nf, .N%, +.Nf or ,d (e.g. .1f, .0%, ,d)")
    if spec == ",d":
        if value != int(value):
            raise ValueError(f"number format ',d' needs an integer, got {value!r}")
        return format_decimal(int(value), locale=locale)
    signed, digits, kind = match.group(1), int(match.group(2)), match.group(3)
    base = locale.percent_formats[None] if kind == "%" else locale.decimal_formats[None]
    pattern = parse_pattern(base.pattern)
    pattern.frac_prec = (digits, digits)
    if not signed:
        return pattern.apply(value, locale)
    text = pattern.apply(abs(value), locale)
    zero = pattern.apply(0, locale)
    sign = get_minus_sign_symbol(locale) if value < 0 and text != zero else get_plus_sign_symbol(locale)
    return sign + text


def claim_text(key: str, spec: str | None, lang: str, claims: dict[str, dict], where: str = "") -> str:
    """The formatted value of one claim; an unknown key says where it is used and what to do."""
    if key not in claims:
        near = [k for k in claims if k.split(".")[0] == key.split(".")[0]][:5]
        raise KeyError(f"{where}unknown claim {key!r}: {CLAIMS_PATH.relative_to(ROOT)} has no such key"
                       f"{' (same prefix: ' + ', '.join(near) + ')' if near else ''}; run the script "
                       "that measures it, or fix the key")
    return format_number(claims[key]["value"], spec, lang)


def expand_claims(text: str, lang: str, claims: dict[str, dict] | None = None, where: str = "") -> str:
    """Replace every `{{claim KEY[:SPEC]}}` of `text` by the claim's value in `lang`'s format."""
    if claims is None:
        claims = load_claims()
    return CLAIM_MACRO.sub(lambda m: claim_text(m.group(1), m.group(2), lang, claims, where), text)


def claim_macros(text: str) -> list[str]:
    """The claim macros of a text, sorted, as a translation must keep them."""
    return sorted(f"{key}:{spec}" if spec else key for key, spec in CLAIM_MACRO.findall(text))


def readme_mismatches(text: str, claims: dict[str, dict] | None = None) -> list[str]:
    """Each README marker whose number, just before it, is not its claim's value (English)."""
    if claims is None:
        claims = load_claims()
    problems = []
    for match in README_MARKER.finditer(text):
        key, spec = match.groups()
        line = text.count("\n", 0, match.start()) + 1
        try:
            expected = claim_text(key, spec, "en", claims)
        except (KeyError, ValueError) as err:
            problems.append(f"README.md:{line}: {err}")
            continue
        before = text[:match.start()]
        start = len(before) - len(expected)
        if not before.endswith(expected) or (start > 0 and before[start - 1].isdigit()):
            problems.append(f"README.md:{line}: marker {key!r} expects {expected!r} just before it, "
                            f"found {before[-len(expected) - 8:]!r}")
    return problems


def script_of(command: str) -> Path | None:
    """The file a `measured_by` command runs: `python x.py ...` or `python -m pkg.mod ...`."""
    words = command.split()
    for i, word in enumerate(words):
        if word.endswith(".py"):
            return ROOT / word
        if word == "-m" and i + 1 < len(words):
            module = ROOT / Path(*words[i + 1].split("."))
            return module / "__main__.py" if module.is_dir() else module.with_suffix(".py")
    return None


# The bundled models' training metrics, written into utils/assets/<model>.json by the training
# commands (their `rebuild` in manifest.json): (claim key, model, path in its "trained" record, unit)
ASSET_CLAIMS = [
    ("tiny-dalle.seen.reranked_accuracy", "tiny-dalle", "quality.seen.reranked_accuracy", "fraction"),
    ("tiny-dalle.seen.sample_accuracy", "tiny-dalle", "quality.seen.sample_accuracy", "fraction"),
    ("tiny-dalle.seen.n_captions", "tiny-dalle", "quality.seen.n_captions", "captions"),
    ("tiny-dalle.heldout.reranked_accuracy", "tiny-dalle", "quality.heldout.reranked_accuracy", "fraction"),
    ("tiny-dalle.heldout.sample_accuracy", "tiny-dalle", "quality.heldout.sample_accuracy", "fraction"),
    ("tiny-dalle.heldout.n_captions", "tiny-dalle", "quality.heldout.n_captions", "captions"),
    ("tiny-dalle.train_seconds", "tiny-dalle", "train_seconds", "s"),
    ("tiny-dalle.steps", "tiny-dalle", "steps", "steps"),
    ("tiny-unclip-decoder.train_seconds", "tiny-unclip-decoder", "train_seconds", "s"),
    ("tiny-prior.decoding.n_captions", "tiny-prior", "decoding.n_captions", "captions"),
    ("tiny-prior.decoding.n_samples", "tiny-prior", "decoding.n_samples", "samples"),
    ("tiny-prior.decoding.text_accuracy", "tiny-prior", "decoding.text.accuracy", "fraction"),
    ("tiny-prior.decoding.prior_accuracy", "tiny-prior", "decoding.prior.accuracy", "fraction"),
    ("tiny-prior.decoding.text_colour_accuracy", "tiny-prior", "decoding.text.colour_accuracy", "fraction"),
    ("tiny-prior.decoding.prior_colour_accuracy", "tiny-prior", "decoding.prior.colour_accuracy", "fraction"),
    ("tiny-prior.retrieval.prior_seen_cosine", "tiny-prior", "retrieval.prior_seen.cos_to_own_images", "cosine"),
    ("tiny-prior.retrieval.text_seen_cosine", "tiny-prior", "retrieval.text_seen.cos_to_own_images", "cosine"),
]


def asset_claims(assets: Path = ROOT / "utils" / "assets") -> dict[str, dict[str, dict]]:
    """{rebuild command: {key: claim}} of ASSET_CLAIMS, read from the models' JSON files."""
    manifest = json.loads((assets / "manifest.json").read_text(encoding="utf-8"))
    out: dict[str, dict[str, dict]] = {}
    for key, model, where, unit in ASSET_CLAIMS:
        value = json.loads((assets / f"{model}.json").read_text(encoding="utf-8"))["trained"]
        for part in where.split("."):
            value = value[part]
        command = manifest[f"{model}.safetensors"]["rebuild"]
        out.setdefault(command, {})[key] = {"value": value, "unit": unit,
                                            "source": f"utils/assets/{model}.json (trained.{where})"}
    return out


def tiny_clip_claims(n: int = 1000, seed: int = 1234) -> dict[str, tuple[float, str]]:
    """Zero-shot accuracy of the bundled tiny CLIP (`tiny-shapes`) on `n` fresh shapes per split.

    Keys `tiny-shapes.<split>.<attribute>`: split "test" (seen colour-shape pairs) or "heldout"
    (pairs never seen in training); attribute colour, shape, colour_shape, size or position."""
    import torch

    from utils.models import load_clip
    from utils.tinyclip import evaluate

    torch.manual_seed(seed)
    model = load_clip("tiny-shapes", device="cpu", verbose=False).model
    return {f"tiny-shapes.{split}.{attr.replace('+', '_')}": (round(value, 6), "fraction")
            for split, row in evaluate(model, n=n, seed=seed).items() for attr, value in row.items()}


def logit_scale_claims() -> dict[str, tuple[float, str]]:
    """The logit scale s = exp(t) that the bundled tiny CLIP (`tiny-shapes`) learned, which
    quiz 01 quotes (tests/test_claims.py checks the quiz text against it): key
    `tiny-shapes.logit_scale`, and `tiny-shapes.temperature` = 1/s."""
    from utils.models import load_clip

    scale = float(load_clip("tiny-shapes", device="cpu", verbose=False).model.logit_scale.detach().exp())
    return {"tiny-shapes.logit_scale": (round(scale, 6), "scale"),
            "tiny-shapes.temperature": (round(1 / scale, 6), "temperature")}


def search_claims(n: int = 2000) -> dict[str, tuple[float, str]]:
    """Notebook 03's text-to-image recall@k (quick mode: `n` pictures, seed 3, every pair), tiny
    CLIP. Keys `search.<template>.recall@<k>`, template colour_shape, size_colour_shape or
    colour_shape_where."""
    from utils.data import caption, render_batch
    from utils.models import load_clip
    from utils.retrieval import ImageIndex

    clip = load_clip("tiny-shapes", device="cpu", verbose=False)
    pixels, attrs = render_batch(n, seed=3, split="all")
    index = ImageIndex.build(clip, list(pixels), batch_size=64)
    templates = {"colour_shape": ("a {colour} {shape}", ("colour", "shape")),
                 "size_colour_shape": ("a {size} {colour} {shape}", ("size", "colour", "shape")),
                 "colour_shape_where": ("a {colour} {shape} {where}", ("colour", "shape", "position"))}
    claims: dict[str, tuple[float, str]] = {}
    for name, (template, keys) in templates.items():
        captions = [caption({"size": "", "position": "left", **{k: a[k] for k in keys}}, template)
                    for a in attrs]
        for k, value in index.recall_at_k(captions).items():
            claims[f"search.{name}.recall@{k}"] = (round(float(value), 6), "fraction")
    return claims


_NOT_CLAIMS = {"load_average", "cpu_count", "seconds", "peak_rss_mb"}  # about the run, not the result


def flatten(result, prefix: str) -> dict[str, float]:
    """Every number of a JSON result under a dotted key: {"p.labels.fr.test": 0.996}."""
    if isinstance(result, dict):
        out = {}
        for key, value in result.items():
            if key not in _NOT_CLAIMS:
                out.update(flatten(value, f"{prefix}.{key}"))
        return out
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        return {prefix: round(result, 6)}
    return {}


MEASURES = {"tiny-clip": tiny_clip_claims, "logit-scale": logit_scale_claims,
            "ensembling": measures.ensembling_claims, "search": search_claims,
            "pil-shapes": measures.pil_shapes_claims, "vq-roundtrip": measures.vq_roundtrip_claims,
            "reranker": measures.reranker_claims, "tiny-generate": measures.tiny_generate_claims,
            "model-size": measures.model_size_claims, "vit-speed": measures.vit_speed_claims}


def imported_unit(key: str, value: float) -> str:
    """The unit of an imported number, from the words of its key's last part: a rate
    ("images_per_s"), a duration ("seconds_to_bar", "ivf_build_s"), a ratio ("ratio_to_goal",
    "speedup"), else a fraction (a value in [0, 1]) or a plain number."""
    words = key.rsplit(".", 1)[-1].split("_")
    if words[-2:] == ["per", "s"]:
        return "per second"
    if "seconds" in words or words[-1] == "s":
        return "seconds"
    if "ratio" in words or "speedup" in words:
        return "ratio"
    return "fraction" if 0 <= value <= 1 else "number"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-assets", action="store_true",
                        help="import the training metrics that the bundled models' JSON files record")
    parser.add_argument("--import", dest="import_file", metavar="JSON",
                        help="a saved `--json` output of a script (kept in reports/) to import")
    parser.add_argument("--prefix", help="key prefix of the imported numbers")
    parser.add_argument("--measured-by", help="the command that wrote the imported file")
    parser.add_argument("--on", help="the machine and date the imported file was measured on")
    parser.add_argument("--measure", choices=sorted(MEASURES), help="measure these claims now")
    args = parser.parse_args(argv)
    if args.measure:
        record(MEASURES[args.measure](), f"python -m course_tools.claims --measure {args.measure}",
               "course_tools/claims.py")
    if args.import_file:
        if not (args.prefix and args.measured_by and args.on):
            parser.error("--import needs --prefix, --measured-by and --on")
        source = Path(args.import_file)
        found = flatten(json.loads(source.read_text(encoding="utf-8")), args.prefix)
        claims = {key: {"value": value, "unit": imported_unit(key, value),
                        "source": source.resolve().relative_to(ROOT).as_posix()}
                  for key, value in found.items()}
        record(claims, args.measured_by, "course_tools/claims.py", on=args.on)
    if args.from_assets:
        for command, claims in asset_claims().items():
            record(claims, command, "course_tools/claims.py",
                   on="the machine that trained the bundled model (see its JSON file)")
        print(f"wrote {CLAIMS_PATH.relative_to(ROOT)}")
    for key, claim in load_claims().items():
        print(f"{key:50} {claim['value']!s:>10} {claim['unit']:10} {claim['measured_by']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
