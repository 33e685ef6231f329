"""`python -m utils doctor`: what this machine can run, and what to do about what it can't.

Reports Python, torch and open_clip versions, the device, which CLIP worlds are
available (pretrained weights cached? tiny model bundled?), the cache folders, and advice.
It never downloads anything and finishes in a few seconds.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import platform
import sys


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


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

        cuda = torch.cuda.is_available()
        report["device"] = {
            "cuda": cuda,
            "name": torch.cuda.get_device_name(0) if cuda else "CPU",
            "threads": torch.get_num_threads(),
        }
        if not cuda:
            advice.append("No GPU: every notebook runs on the CPU in quick mode; "
                          "the full VQGAN+CLIP experience at 256 px wants a GPU (e.g. Colab).")
    except ImportError:
        report["device"] = None
        advice.append("torch is not installed: run `make lab` (or pip install -e .).")

    from .models import available_worlds, network_available

    worlds = available_worlds()
    report["worlds"] = worlds
    report["network"] = network_available(timeout=1.0)
    if not worlds["tiny"]["available"]:
        advice.append("The bundled tiny CLIP is missing: rebuild it with `python -m utils train clip`.")
    if not worlds["pretrained"]["available"]:
        if report["network"]:
            advice.append(f"Pretrained {worlds['pretrained']['model']} is not cached: the notebooks "
                          "will download it (about 600 MB) the first time MODEL='auto' is used.")
        else:
            advice.append(f"Pretrained {worlds['pretrained']['model']} is not cached and we are "
                          "offline: notebooks use the tiny shapes-world CLIP. Connect once to get it.")
    report["advice"] = advice
    report["ok"] = bool(worlds["tiny"]["available"] and report.get("device") is not None)
    return report


def format_report(report: dict) -> str:
    lines = [f"Python       {report['python']}  ({report['platform']})"]
    for name, version in report["packages"].items():
        lines.append(f"{name:<13}{version or 'not installed'}")
    dev = report.get("device") or {}
    lines.append(f"device       {dev.get('name', 'unknown')} (cuda: {dev.get('cuda')})")
    tiny, pre = report["worlds"]["tiny"], report["worlds"]["pretrained"]
    lines.append(f"tiny world   {'available' if tiny['available'] else 'MISSING'}: {tiny['weights']}")
    lines.append(f"pretrained   {'available' if pre['available'] else 'not cached'}: {pre['model']}"
                 f"  (cache folder {pre['cache_dir']})")
    lines.append(f"network      {'reachable' if report['network'] else 'offline'}")
    for item in report["advice"]:
        lines.append(f"-> {item}")
    return "\n".join(lines)


def run(args) -> int:
    report = diagnose()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["ok"] else 1


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check what this machine can run")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


if __name__ == "__main__":
    sys.exit(run(type("Args", (), {"json": "--json" in sys.argv})()))
