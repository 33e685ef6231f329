"""`python -m utils doctor`: what this machine can run (versions, device, CLIP worlds and their
languages, caches), and what to do about what it can't. Never downloads; takes seconds."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import platform

from .errors import to_json

# name shown -> distribution
PACKAGES = {"torch": "torch", "torchvision": "torchvision", "open_clip": "open_clip_torch",
            "kornia": "kornia", "ipywidgets": "ipywidgets", "faiss": "faiss-cpu",
            "scikit-image": "scikit-image", "pixray": "pixray"}
# Minutes per lesson in full mode with pretrained ViT-B-32 on 2 CPU cores: 02 and 03 as measured
# in issue 16 (02's ImageNet cell 831 s; 03 25-80 min), 04 its REAL_RUN_CPU steps at the s/step
# of benchmarks/bench_lesson04_cpu.py. Quick mode is the CI budget: under 1 min per notebook.
FULL_MINUTES_CPU_PRETRAINED = {"02": 14, "03": 80, "04": 3}


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def lesson_estimates(device: dict | None, pretrained: bool) -> dict:
    """{lesson: {"quick": minutes, "full": minutes or None (not measured here)}}."""
    on_cpu = not (device and (device.get("cuda") or device.get("mps")))
    full = FULL_MINUTES_CPU_PRETRAINED if (pretrained and on_cpu) else {}
    return {lesson: {"quick": 1, "full": full.get(lesson)}
            for lesson in ("00", "01", "02", "03", "04", "05")}


def _device(advice: list[str]) -> dict | None:
    """The device every notebook and command uses by default, or None without torch."""
    try:
        import torch
    except ImportError:
        advice.append("torch is not installed: run `make lab` (or pip install -e .).")
        return None
    from .assets import DEVICE_ENV, pick_device
    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    try:
        chosen = str(pick_device("auto"))
    except ValueError as err:  # $COURSE_DEVICE names a device this machine lacks
        chosen = None
        advice.append(str(err))
    if not cuda:
        advice.append("No GPU: every notebook runs on the CPU in quick mode; "
                      "the full VQGAN+CLIP experience at 256 px wants a GPU (e.g. Colab).")
    name = torch.cuda.get_device_name(0) if cuda else ("Apple GPU (MPS)" if mps else "CPU")
    return {"chosen": chosen, "cuda": cuda, "mps": mps, "name": name,
            "threads": torch.get_num_threads(),
            "setting": f"${DEVICE_ENV} or --device (cpu, cuda, mps, auto)"}


def diagnose() -> dict:
    """Collect the report as a dict (what `--json` prints)."""
    from . import models
    from .assets import CACHE_ENV, course_cache_dir, verify_assets
    from .i18n import find_cjk_font
    from .models import available_worlds, clip_languages, network_available
    from .vqgan import checkpoint_status

    advice: list[str] = []
    report: dict = {"python": platform.python_version(), "platform": platform.platform(),
                    "packages": {name: _version(dist) for name, dist in PACKAGES.items()},
                    "device": _device(advice)}
    worlds = report["worlds"] = available_worlds()
    pretrained = worlds["pretrained"]
    report["languages"] = clip_languages()  # {model: languages its text tower reads}, cached only
    report["network"] = network_available(timeout=1.0)
    if not worlds["tiny"]["available"]:
        advice.append("The bundled tiny CLIP is missing: rebuild it with "
                      "`python -m course_tools train clip`.")
    report["assets"] = verify_assets()  # {file: problem}: bundled weights checked by sha256
    advice += [f"Bundled {name}: {problem}" for name, problem in report["assets"].items()]
    if not pretrained["available"] and report["network"]:
        size = models.download_size(models.DEFAULT_MODEL, models.DEFAULT_PRETRAINED, "en")
        advice.append(f"Pretrained {pretrained['model']} is not cached: notebooks use the tiny "
                      f"CLIP; set MODEL = {models.DEFAULT_MODEL!r} in one to download it ({size}).")
    elif not pretrained["available"]:
        advice.append(f"Pretrained {pretrained['model']} is not cached and we are offline: "
                      "notebooks use the tiny shapes-world CLIP. Connect once to get it.")
    report["cache"] = {"course": str(course_cache_dir()), "setting": f"${CACHE_ENV}",
                       "huggingface": pretrained["cache_dir"]}
    vq = report["vqgan"] = checkpoint_status("f16_16384")
    if not vq["present"]:
        advice.append(f"No VQGAN checkpoint at {vq['path']}: lesson 04's real section is skipped. "
                      f"Download it (about 1 GB) with: {vq['download']}")
    elif vq["sha256_verified"] is False:
        advice.append(f"The VQGAN checkpoint {vq['path']} does not match the sha256 recorded at "
                      "download: delete it and download it again.")
    report["faiss"] = importlib.util.find_spec("faiss") is not None
    if not report["faiss"]:
        advice.append("faiss is not installed: lesson 03's faiss cells need it "
                      "(pip install faiss-cpu).")
    report["lesson_minutes"] = lesson_estimates(report["device"], pretrained["available"])
    report["cjk_font"] = find_cjk_font()  # zh plots need one, or their labels are empty boxes
    if report["cjk_font"] is None:
        advice.append("No Chinese font: zh plot labels show as empty boxes. Install "
                      "fonts-noto-cjk (apt-get install fonts-noto-cjk; Colab: !apt-get -qq "
                      "install fonts-noto-cjk).")
    report["advice"] = advice
    report["ok"] = bool(worlds["tiny"]["available"] and report["device"] is not None
                        and not report["assets"])
    return report


def format_report(report: dict) -> str:
    """The human-readable version of the report."""
    dev, vq = report.get("device") or {}, report["vqgan"]
    tiny, pre = report["worlds"]["tiny"], report["worlds"]["pretrained"]
    check = {True: "sha256 verified", False: "sha256 MISMATCH", None: "no sha256 recorded"}
    languages = "; ".join(f"{m}: {langs}" for m, langs in report["languages"].items())
    minutes = ", ".join(f"{k}: <{v['quick']}/{v['full'] or '?'}"
                        for k, v in report["lesson_minutes"].items())
    assets = report.get("assets")
    lines = [
        f"Python       {report['python']}  ({report['platform']})",
        *(f"{name:<13}{v or 'not installed'}" for name, v in report["packages"].items()),
        f"device       {dev.get('chosen')}: {dev.get('name', 'unknown')} (cuda: {dev.get('cuda')}, "
        f"mps: {dev.get('mps')}; set with {dev.get('setting')})",
        f"tiny world   {'available' if tiny['available'] else 'MISSING'}: {tiny['weights']}",
        f"pretrained   {'available' if pre['available'] else 'not cached'}: {pre['model']}"
        f"  (cache folder {pre['cache_dir']})",
        f"languages    {languages or 'no CLIP loads here'}",
        f"network      {'reachable' if report['network'] else 'offline'}",
        f"VQGAN        {'present' if vq['present'] else 'not downloaded'}: {vq['path']}"
        + (f" ({vq['size_mb']} MB, {check[vq['sha256_verified']]})" if vq["present"] else ""),
        f"faiss        {'available' if report['faiss'] else 'not installed'}",
        f"CJK font     {report.get('cjk_font') or 'none (zh plots show boxes)'}",
        f"cache        {report['cache']['course']}  (set with {report['cache']['setting']})",
        f"minutes      {minutes}  (lesson: quick/full mode here; ?: not measured)",
        f"bundled      {'DAMAGED: ' + ', '.join(assets) if assets else 'sha256 verified'}",
        *(f"-> {item}" for item in report["advice"]),
    ]
    return "\n".join(lines)


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check what this machine can run")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    report = diagnose()
    print(to_json(report, indent=2) if args.json else format_report(report))
    return 0 if report["ok"] else 1
