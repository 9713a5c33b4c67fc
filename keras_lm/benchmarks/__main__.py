"""python -m keras_lm.benchmarks [--output DIR] [--sections mlm packing serving portable generation seq2seq profile] [--profile]
[--quick] [--rounds R] [--update-readme README.md]"""
import argparse

from keras_lm.benchmarks.runner import SECTIONS, run_benchmarks
from keras_lm.benchmarks.table import format_table, update_readme


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="keras-lm bench", description="keras_lm vs keras-hub, side by side")
    parser.add_argument("--output", default="runs/bench")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--profile", action="store_true",
                        help="only the profile section: where a keras_lm MLM train step's time goes (profile.md)")
    parser.add_argument("--quick", action="store_true", help="tiny model, few steps, 2 rounds (harness check)")
    parser.add_argument("--rounds", type=int, help="interleaved timing rounds per section (default 5)")
    parser.add_argument("--update-readme", metavar="README", help="write the table into README's bench section")
    args = parser.parse_args(argv)
    if args.profile and args.update_readme:
        parser.error("--profile writes profile.md only; run without --profile to update the README table.")
    sections = ["profile"] if args.profile else args.sections
    results = run_benchmarks(args.output, sections, args.quick, args.rounds)
    if args.update_readme:
        update_readme(args.update_readme, format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
