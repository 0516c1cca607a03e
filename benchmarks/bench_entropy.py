"""Benchmark: byte-level throughput of the entropy proxies (SE, CE, JE; and VNE separately).

Builds about 100 MB of real text (this Python's standard-library sources, repeated) in a
temporary folder, then prints the median MB/s over repeats, in one process.

    python benchmarks/bench_entropy.py [--megabytes 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

from bimix_bayes.proxy.entropy import domain_entropies


def build_corpus(folder: Path, megabytes: float) -> Path:
    sources = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    target = folder / "corpus.txt"
    size = 0
    with open(target, "wb") as out:
        while size < megabytes * 1e6:
            for src in sources:
                data = src.read_bytes()
                out.write(data)
                size += len(data)
                if size >= megabytes * 1e6:
                    break
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = build_corpus(Path(tmp), args.megabytes)
        size_mb = corpus.stat().st_size / 1e6
        for measures in (("se", "ce", "je"), ("vne",)):
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                domain_entropies({"text": corpus}, measures=measures, progress=False)
                times.append(time.perf_counter() - t0)
            median = statistics.median(times)
            print(
                f"{'+'.join(measures):<9} {size_mb:6.1f} MB, byte-level, 1 process: median "
                f"{median:5.2f} s over {args.repeats} runs = {size_mb / median:6.1f} MB/s"
            )


if __name__ == "__main__":
    main()
