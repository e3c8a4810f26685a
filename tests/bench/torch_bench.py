"""Times PyTorch on the cases bench.lua describes, on the same thread count.

usage: torch_bench.py cases.json threads  -> prints JSON {name: seconds}
Each case: {"name", "setup", "stmt", "reps", "inner"}; the statement runs
`inner` times per timed repetition; the median repetition is reported per
single statement."""
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F  # noqa: F401  (used by case code)


def main():
    cases = json.load(open(sys.argv[1]))
    torch.set_num_threads(int(sys.argv[2]))
    out = {}
    for c in cases:
        env = {"torch": torch, "F": F}
        exec(c["setup"], env)
        code = compile(c["stmt"], c["name"], "exec")
        inner = c.get("inner", 1)
        with torch.no_grad():
            exec(code, env)  # warm up
            times = []
            for _ in range(c["reps"]):
                t0 = time.perf_counter()
                for _ in range(inner):
                    exec(code, env)
                times.append((time.perf_counter() - t0) / inner)
        out[c["name"]] = statistics.median(times)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
