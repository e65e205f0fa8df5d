"""NSGA-II on ZDT1-3 with pymoo's defaults, for comparison with `examples/nsga2_zdt.rs`.

Usage: nsga2_pymoo.py --problem zdt1 --pop 100 --gens 250 --seed 1 [--out front.csv]
Prints one line: problem, pop, gens, seed, hypervolume (ref (1.1, 1.1)), ms per generation.
"""
import argparse
import time

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.indicators.hv import HV
from pymoo.optimize import minimize
from pymoo.problems import get_problem


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--problem", default="zdt1")
    ap.add_argument("--pop", type=int, default=100)
    ap.add_argument("--gens", type=int, default=250)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out")
    a = ap.parse_args()
    problem = get_problem(a.problem)  # n_var = 30
    t0 = time.perf_counter()
    res = minimize(problem, NSGA2(pop_size=a.pop), ("n_gen", a.gens), seed=a.seed, verbose=False)
    ms = (time.perf_counter() - t0) * 1000.0 / a.gens
    hv = HV(ref_point=np.array([1.1, 1.1]))(res.F)
    if a.out:
        np.savetxt(a.out, res.F, delimiter=",", header="f1,f2", comments="")
    print(f"pymoo problem={a.problem} pop={a.pop} gens={a.gens} seed={a.seed} hv={hv:.6f} ms_per_gen={ms:.3f}")


if __name__ == "__main__":
    main()
