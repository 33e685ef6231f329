"""`python -m utils doctor`: what this machine can run, and what to do about what it can't.

Reports Python, torch and open_clip versions, the device, which CLIP worlds are
available (pretrained weights cached? tiny model bundled?) and which languages each reads,
the cache folders, and advice.
It never downloads anything and finishes in a few seconds.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import sys

from .errors import to_json


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# Minutes per lesson. Quick mode: the CI budget, under 1 min per notebook on 2 CPU cores.
# Full mode with pretrained ViT-B-32 on 2 CPU cores: 02 and 03 as measured in issue 16
# (02's ImageNet cell 831 s; 03 25-80 min), 04 its REAL_RUN_CPU steps at the s/step of
# benchmarks/bench_lesson04_cpu.py. None: not measured on this kind of machine.
FULL_MINUTES_CPU_PRETRAINED = {"02": 14, "03": 80, "04": 3}


def lesson_estimates(device: dict | None, pretrained: bool) -> dict:
    """{lesson: {"quick": minutes, "full": minutes or None}} for this machine's device and models."""
    on_cpu = not (device and (device.get("cuda") or device.get("mps")))
    full = FULL_MINUTES_CPU_PRETRAINED if (pretrained and on_cpu) else {}
    return {lesson: {"quick": 1, "full": full.get(lesson)} for lesson in ("00", "01", "02", "03", "04", "05")}


def diagnose() -> dict:
    """Collect the report as a dict (what `--json` prints)."""
    report: dict = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {
            name: _version(dist)
            for name, dist in [
                ("torch", "torch"), ("torchvision", "torchvision"), ("open_clip", "open_clip_torch"),
                ("kornia", "kornia"), ("ipywidgets", "ipywidgets"), ("faiss", "faiss-cpu"),
                ("scikit-image", "scikit-image"), ("pixray", "pixray"),
            ]
        },
    }
    advice = []
    try:
        import torch

        from .models import DEVICE_ENV, pick_device

        cuda = torch.cuda.is_available()
        mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
        try:
            chosen = str(pick_device("auto"))  # what every notebook and command uses by default
        except ValueError as err:  # $COURSE_DEVICE names a device this machine lacks
            chosen = None
            advice.append(str(err))
        report["device"] = {
            "chosen": chosen,
            "cuda": cuda,
            "mps": mps,
            "name": torch.cuda.get_device_name(0) if cuda else ("Apple GPU (MPS)" if mps else "CPU"),
            "threads": torch.get_num_threads(),
            "setting": f"${DEVICE_ENV} or --device (cpu, cuda, mps, auto)",
        }
        if not cuda:
            advice.append("No GPU: every notebook runs on the CPU in quick mode; "
                          "the full VQGAN+CLIP experience at 256 px wants a GPU (e.g. Colab).")
    except ImportError:
        report["device"] = None
        advice.append("torch is not installed: run `make lab` (or pip install -e .).")

    from .models import available_worlds, clip_languages, network_available

    worlds = available_worlds()
    report["worlds"] = worlds
    report["languages"] = clip_languages()  # {model: languages its text tower reads}, cached ones only
    report["network"] = network_available(timeout=1.0)
    if not worlds["tiny"]["available"]:
        advice.append("The bundled tiny CLIP is missing: rebuild it with `python -m course_tools train clip`.")
    from .assets import verify_assets

    report["assets"] = verify_assets()  # {file: problem}: bundled weights checked by sha256
    for name, problem in report["assets"].items():
        advice.append(f"Bundled {name}: {problem}")
    if not worlds["pretrained"]["available"]:
        if report["network"]:
            advice.append(f"Pretrained {worlds['pretrained']['model']} is not cached: notebooks use the "
                          "tiny CLIP; set MODEL = 'ViT-B-32' in one to download it (about 605 MB).")
        else:
            advice.append(f"Pretrained {worlds['pretrained']['model']} is not cached and we are "
                          "offline: notebooks use the tiny shapes-world CLIP. Connect once to get it.")
    from .models import CACHE_ENV, course_cache_dir
    from .vqgan import checkpoint_status

    report["cache"] = {"course": str(course_cache_dir()), "setting": f"${CACHE_ENV}",
                       "huggingface": worlds["pretrained"]["cache_dir"]}
    report["vqgan"] = checkpoint_status("f16_16384")
    if not report["vqgan"]["present"]:
        advice.append(f"No VQGAN checkpoint at {report['vqgan']['path']}: lesson 04's real section is "
                      f"skipped. Download it (about 1 GB) with: {report['vqgan']['download']}")
    elif report["vqgan"]["sha256_verified"] is False:
        advice.append(f"The VQGAN checkpoint {report['vqgan']['path']} does not match the sha256 recorded "
                      "at download: delete it and download it again.")
    report["faiss"] = _importable("faiss")
    if not report["faiss"]:
        advice.append("faiss is not installed: lesson 03's faiss cells need it (pip install faiss-cpu).")
    report["lesson_minutes"] = lesson_estimates(report["device"], worlds["pretrained"]["available"])
    from .i18n import find_cjk_font

    report["cjk_font"] = find_cjk_font()  # zh plots need one, or their labels are empty boxes
    if report["cjk_font"] is None:
        advice.append("No Chinese font: zh plot labels show as empty boxes. Install fonts-noto-cjk "
                      "(apt-get install fonts-noto-cjk; Colab: !apt-get -qq install fonts-noto-cjk).")
    report["advice"] = advice
    report["ok"] = bool(worlds["tiny"]["available"] and report.get("device") is not None
                        and not report["assets"])
    return report


def format_report(report: dict) -> str:
    lines = [f"Python       {report['python']}  ({report['platform']})"]
    for name, version in report["packages"].items():
        lines.append(f"{name:<13}{version or 'not installed'}")
    dev = report.get("device") or {}
    lines.append(f"device       {dev.get('chosen')}: {dev.get('name', 'unknown')} (cuda: {dev.get('cuda')}, "
                 f"mps: {dev.get('mps')}; set with {dev.get('setting')})")
    tiny, pre = report["worlds"]["tiny"], report["worlds"]["pretrained"]
    lines.append(f"tiny world   {'available' if tiny['available'] else 'MISSING'}: {tiny['weights']}")
    lines.append(f"pretrained   {'available' if pre['available'] else 'not cached'}: {pre['model']}"
                 f"  (cache folder {pre['cache_dir']})")
    lines.append("languages    " + ("; ".join(f"{m}: {langs}" for m, langs in report["languages"].items())
                                    or "no CLIP loads here"))
    lines.append(f"network      {'reachable' if report['network'] else 'offline'}")
    vq = report["vqgan"]
    check = {True: "sha256 verified", False: "sha256 MISMATCH", None: "no sha256 recorded"}
    lines.append(f"VQGAN        {'present' if vq['present'] else 'not downloaded'}: {vq['path']}"
                 + (f" ({vq['size_mb']} MB, {check[vq['sha256_verified']]})" if vq["present"] else ""))
    lines.append(f"faiss        {'available' if report['faiss'] else 'not installed'}")
    lines.append(f"CJK font     {report.get('cjk_font') or 'none (zh plots show boxes)'}")
    lines.append(f"cache        {report['cache']['course']}  (set with {report['cache']['setting']})")
    lines.append("minutes      " + ", ".join(f"{k}: <{v['quick']}/{v['full'] or '?'}"
                                             for k, v in report["lesson_minutes"].items())
                 + "  (lesson: quick/full mode here; ?: not measured)")
    lines.append(f"bundled      {'sha256 verified' if not report.get('assets') else 'DAMAGED: ' + ', '.join(report['assets'])}")
    for item in report["advice"]:
        lines.append(f"-> {item}")
    return "\n".join(lines)


def run(args) -> int:
    report = diagnose()
    print(to_json(report, indent=2) if args.json else format_report(report))
    return 0 if report["ok"] else 1


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check what this machine can run")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


if __name__ == "__main__":
    sys.exit(run(type("Args", (), {"json": "--json" in sys.argv})()))
