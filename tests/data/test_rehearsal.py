"""The rehearsal (benchmarks/rehearsal.py): its memory sampler, its projection and tables, and
(slow) every step at toy sizes; the GPU check's data is the rehearsal's layout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.rehearsal import TreeMemory
from benchmarks.rehearsal_report import project, to_markdown


def test_tree_memory_sees_a_child_and_its_own_child() -> None:
    code = (
        "import subprocess, sys, time; b = bytearray(60 << 20); "
        "subprocess.run([sys.executable, '-c', 'import time; b = bytearray(30 << 20); "
        "b[::4096] = b\"x\" * len(b[::4096]); time.sleep(0.8)']); b[::4096] = b'x' * len(b[::4096])"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    memory = TreeMemory(proc.pid)
    proc.wait()
    peaks = memory.stop()
    assert peaks["main"]["VmHWM"] > 55 and peaks["main"]["RssAnon"] > 0
    assert len(peaks["workers"]) == 1 and peaks["workers"][0]["VmHWM"] > 25


def _results() -> dict[str, object]:
    def run(clips: int, main_cpu: float) -> dict[str, object]:
        # 10 clips per worker CPU-second; the main process: 2 ms a clip while decoding, and
        # 10 CPU-s + 5 ms a clip alone
        memory = {"main": {"VmHWM": 500.0, "RssAnon": 300.0}, "workers": [{"VmHWM": 200.0}],
                  "workers_cpu_s": clips / 10, "main_cpu_decoding_s": 0.002 * clips,
                  "main_cpu_s": main_cpu}  # fmt: skip
        return {"memory": memory, "clips": clips, "decoded": clips, "decode_s": clips / 18,
                "wall_s": clips / 15, "cpu_s": clips / 9}  # fmt: skip

    spec = {"seconds": 10, "width": 480, "height": 360, "fps": 25, "video_codec": "libx264",
            "crf": 28, "audio_codec": "aac", "sample_rate": 44100}  # fmt: skip
    cov = {"total": {"prepared": 90}}
    return {
        "cores": 2, "workers": 2, "load_before": [0.5], "load_after": [1.0], "wall_s": 600.0,
        "sizes": {"spec": spec, "classes": 16, "unique": 3, "frames": 3, "size": 224,
                  "n_mels": 128, "epochs": 2},
        "vggsound": {
            "clips": 2000, "missing": 20, "corrupt": 4, "mb_per_clip": 0.4, "write_s": 30.0,
            "decode_only_1": {"per_s": 15.0, "per_cpu_s": 12.5},
            "decode_only_n": {"per_s": 28.0, "per_cpu_s": 12.0},
            "small": run(500, 1.0 + 10 + 2.5), "large": run(2000, 4.0 + 10 + 10),
            "hd": {"sd": {"prepare_s": 0.1}, "hd": {"prepare_s": 0.35}},
        },
        "others": {"ave": {"annotated": 100, "wall_s": 9.0, "cpu_s": 12.0, "coverage": cov}},
        "train": {"wall_s": 60.0, "test_acc": {"joint": 0.9}, "chance": 1 / 16, "command": "umt run"},
    }  # fmt: skip


def test_projection_from_cpu_time() -> None:
    r = _results()
    p = project(r)
    assert p["prepare_per_core"] == pytest.approx(10.0)
    assert p["serial_s_per_clip"] == pytest.approx(0.005) and p["serial_s_fixed"] == pytest.approx(
        10
    )
    vgg, ks_sd, ks_hd = p["rows"]
    assert vgg["clips_per_s"] == pytest.approx(160)  # 16 x 10, under the main's 500 clips/s
    assert vgg["wall_s"] == pytest.approx(199_176 / 160 + 10 + 0.005 * 199_176)
    assert ks_hd["decode_s"] == pytest.approx(3.5 * ks_sd["decode_s"])
    r["vggsound"]["large"]["memory"]["main_cpu_decoding_s"] = 0.01 * 2000  # type: ignore[index]
    assert project(r)["rows"][0]["clips_per_s"] == pytest.approx(100)  # the main is the limit
    r["projection"] = p
    md = to_markdown(r)
    assert "| decode only, 2 processes | 28.0 | 12.0 |" in md
    assert "| VGGSound | 199,176 | 480x360 | 160 |" in md and "1280x720" in md


def test_the_gpu_check_prepares_the_rehearsal_layout(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from benchmarks.gpu_check import TINY, make_data

    root, timings = make_data(TINY, tmp_path, lambda _: None)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["num_classes"] == 4 and (root / "coverage.md").is_file()
    assert not (tmp_path / "raw").exists() and timings["prepare_s"] > 0


@pytest.mark.slow  # every step at toy sizes: six `umt` processes start (1-4 minutes)
def test_the_rehearsal_runs_every_step_tiny(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from benchmarks.rehearsal import main

    assert main(["--tiny", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "rehearsal.json").read_text())
    assert set(r["others"]) == {"kinetics_sounds", "cremad", "ave", "nyuv2"}
    assert r["vggsound"]["large"]["memory"]["workers"] and r["train"]["test_acc"]
    assert "Projection to 16 cores" in (tmp_path / "rehearsal.md").read_text()
