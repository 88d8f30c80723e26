"""`make bench-load`: the server under a lecture hall's load, beside the bare Channels floor.

Run ``python -m bench.load --help`` from the repository root; what it measures is in
bench/README.md.
"""
