#!/usr/bin/env python3
"""Plot the curves of an orpo-hpc run from its metrics.h5 into a PNG.

    python3 tools/plot_metrics.py runs/<job>/metrics.h5 [-o curves.png]

Panels: chosen and rejected mean log-probs; log-odds (mean z) and log-odds ratio (mean log sigmoid z); ORPO loss
and NLL; validation preference accuracy (and the training reward accuracy); learning rate; gradient norm.
Needs h5py and matplotlib (Debian: python3-h5py python3-matplotlib; `make demo` installs them).
"""
import argparse
import os
import sys

try:
    import h5py
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: E402
except ImportError as e:  # say which interpreter lacks what, and how to get it
    sys.exit("plot_metrics.py: %s (%s) lacks the module '%s': it needs h5py and matplotlib; on Debian: "
             "sudo apt-get install python3-h5py python3-matplotlib, then run /usr/bin/python3 %s ...; or in a venv: "
             "pip install h5py matplotlib" % (sys.executable, sys.version.split()[0], e.name, sys.argv[0]))


def table(f, name):
    if name not in f:
        return None
    d = f[name][()]
    return {k: d[k] for k in d.dtype.names} if len(d) else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("metrics", help="runs/<job>/metrics.h5")
    ap.add_argument("-o", "--out", help="PNG to write (default: next to metrics.h5, curves.png)")
    a = ap.parse_args()
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(a.metrics)), "curves.png")
    with h5py.File(a.metrics, "r") as f:
        tr, va = table(f, "train"), table(f, "val")
    if tr is None:
        sys.exit("%s: no rows in the train table yet" % a.metrics)
    s = tr["step"]
    fig, ax = plt.subplots(2, 3, figsize=(15, 8))
    ax[0, 0].plot(s, tr["chosen_logps"], label="chosen")
    ax[0, 0].plot(s, tr["rejected_logps"], label="rejected")
    ax[0, 0].set_title("mean answer log-prob")
    ax[0, 1].plot(s, tr["log_odds_chosen"], label="log-odds (mean z)")
    ax[0, 1].plot(s, tr["log_odds_ratio"], label="log-odds ratio (mean log σ(z))")
    ax[0, 1].set_title("odds ratio")
    ax[0, 2].plot(s, tr["loss"], label="ORPO loss")
    ax[0, 2].plot(s, tr["nll_loss"], label="NLL")
    ax[0, 2].set_title("loss")
    ax[1, 0].plot(s, tr["reward_accuracy"], ".", alpha=0.4, label="train (per step)")
    if va is not None:
        ax[1, 0].plot(va["step"], va["accuracy"], "o-", label="validation")
    ax[1, 0].set_ylim(-0.05, 1.05)
    ax[1, 0].set_title("preference accuracy")
    ax[1, 1].plot(s, tr["lr"])
    ax[1, 1].set_title("learning rate")
    ax[1, 2].plot(s, tr["grad_norm"])
    ax[1, 2].set_title("gradient norm (before clipping)")
    for x in ax.flat:
        x.set_xlabel("step")
        if x.get_legend_handles_labels()[0]:
            x.legend()
        x.grid(alpha=0.3)
    fig.suptitle(os.path.abspath(a.metrics))
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print("wrote", out)


if __name__ == "__main__":
    main()
