"""Reference trajectories for tests/lua/test_optim.lua, computed by torch.optim.

usage: optim_ref.py optim|sched|clip IN OUT
The run's settings arrive as safetensors metadata; options are "k=literal"
pairs separated by ';' so the Lua side needs no JSON encoder (CyclicLR's
scale_fn is the exception: a string holding a lambda, evaluated here).
`sched` reports each group's lr and momentum (beta1 for Adam-style groups)
after construction and after every step.
"""
import ast
import math
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import st  # noqa: E402
import torch  # noqa: E402

torch.set_default_dtype(torch.float32)


def kwargs(s):
    out = {}
    for part in filter(None, (s or "").split(";")):
        k, v = part.split("=", 1)
        out[k] = ast.literal_eval(v)
    return out


def run_optim(t, meta):
    W = t["W"].clone().requires_grad_(True)
    b = t["b"].clone().requires_grad_(True)
    x, y = t["x"], t["y"]
    kw = kwargs(meta.get("kwargs"))
    if meta.get("group_lrs"):
        lrs = [float(v) for v in meta["group_lrs"].split(",")]
        params = [{"params": [W], "lr": lrs[0]}, {"params": [b], "lr": lrs[1]}]
    else:
        params = [W, b]
    opt = getattr(torch.optim, meta["name"])(params, **kw)
    out = {}
    for step in range(1, int(meta["steps"]) + 1):
        opt.zero_grad()
        loss = ((x @ W.t() + b - y) ** 2).sum()
        loss.backward()
        opt.step()
        out["W.%d" % step] = W.detach().clone()
        out["b.%d" % step] = b.detach().clone()
    return out


def make_sched(name, opt, kw):
    S = torch.optim.lr_scheduler
    if name == "Sequential":
        # the composition test_optim.lua builds: warm up linearly, then decay
        a = S.LinearLR(opt, start_factor=0.1, total_iters=10)
        c = S.ExponentialLR(opt, gamma=0.95)
        d = S.CosineAnnealingLR(opt, T_max=15, eta_min=0.001)
        return S.SequentialLR(opt, schedulers=[a, c, d], milestones=[10, 40])
    if isinstance(kw.get("scale_fn"), str):
        # CyclicLR's custom scale function arrives as the source of a lambda
        kw["scale_fn"] = eval(kw["scale_fn"], {"math": math})
    return getattr(S, name)(opt, **kw)


def momentum_of(group):
    """SGD's momentum, or beta1 for Adam-style groups."""
    return group["momentum"] if "momentum" in group else group["betas"][0]


def run_sched(t, meta):
    p1 = torch.zeros(2, requires_grad=True)
    p2 = torch.zeros(2, requires_grad=True)
    lrs = [float(v) for v in meta["group_lrs"].split(",")]
    optname = meta.get("optimizer", "SGD")
    groups = [{"params": [p1], "lr": lrs[0]}, {"params": [p2], "lr": lrs[1]}]
    if optname == "SGD":
        opt = torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)
    else:
        opt = getattr(torch.optim, optname)(groups, lr=lrs[0])
    name = meta["name"]
    sched = make_sched(name, opt, kwargs(meta.get("kwargs")))
    steps = int(meta["steps"])
    rows = [g["lr"] for g in opt.param_groups]
    moms = [momentum_of(g) for g in opt.param_groups]
    metrics = t.get("metrics")
    for i in range(steps):
        opt.step()
        if name == "ReduceLROnPlateau":
            sched.step(float(metrics[i]))
        else:
            sched.step()
        rows += [g["lr"] for g in opt.param_groups]
        moms += [momentum_of(g) for g in opt.param_groups]
    return {"lr": torch.tensor(rows, dtype=torch.float64).reshape(steps + 1, 2),
            "momentum": torch.tensor(moms, dtype=torch.float64).reshape(steps + 1, 2)}


def run_clip(t, meta):
    ps = []
    for name in ("g1", "g2"):
        p = torch.zeros_like(t[name], requires_grad=True)
        p.grad = t[name].clone()
        ps.append(p)
    nt = meta["norm_type"]
    nt = math.inf if nt == "inf" else float(nt)
    total = torch.nn.utils.clip_grad_norm_(ps, float(meta["max_norm"]), norm_type=nt)
    return {"total": total.double().reshape(1), "g1": ps[0].grad, "g2": ps[1].grad}


def main():
    mode, fin, fout = sys.argv[1:4]
    t, meta = st.load(fin)
    out = {"optim": run_optim, "sched": run_sched, "clip": run_clip}[mode](t, meta)
    st.save(fout, out)


if __name__ == "__main__":
    main()
