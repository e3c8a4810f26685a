"""Evaluates a batch of PyTorch expressions for the parity tests.

usage: torch_eval.py inputs.safetensors outputs.safetensors
The input file's metadata "cases" is a JSON list of {"id", "expr", "inputs"}:
each input name maps to tensor "<id>.<name>" in the file. Each expression is
evaluated with torch, F (torch.nn.functional) and the inputs in scope; its
result (a tensor, a number, or a tuple/list of them) is written as tensors
"<id>.<k>" (k = 1, 2, ...). Failures are reported per case in the output
metadata "errors" (JSON object id -> message), never as a crash."""
import json
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, __import__("os").path.dirname(__file__))
import st  # noqa: E402

torch.set_num_threads(1)


def vjp(f, *xs, v=None):
    """(output, grad of each floating input) of <f(xs), v>; v defaults to ones.
    Integer inputs (class targets, indices) get no gradient entry."""
    xs = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in xs]
    out = f(*xs)
    v = torch.ones_like(out) if v is None else v
    wrt = [x for x in xs if x.requires_grad]
    grads = torch.autograd.grad(out, wrt, v, allow_unused=True)
    return (out.detach(),) + tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, wrt))


def load(m, **tensors):
    """m with its state_dict replaced by the given tensors (strict), for module parity."""
    sd = m.state_dict()
    for k, v in tensors.items():
        key = k[2:].replace("__", ".")  # p_<name with dots as __>
        sd[key] = v.to(sd[key].dtype).reshape(sd[key].shape)
    m.load_state_dict(sd, strict=True)
    return m


def main():
    tensors, meta = st.load(sys.argv[1])
    cases = json.loads(meta["cases"])
    out, errors = {}, {}
    for c in cases:
        env = {"torch": torch, "F": F, "math": __import__("math"), "vjp": vjp, "load": load, "nn": torch.nn}
        for name in c["inputs"]:
            env[name] = tensors[c["id"] + "." + name]
        try:
            r = eval(c["expr"], env)
            if not isinstance(r, (tuple, list)) or (isinstance(r, (tuple, list)) and hasattr(r, "values") and False):
                r = (r,)
            for k, v in enumerate(r, 1):
                if not torch.is_tensor(v):
                    v = torch.tensor(v)
                out["%s.%d" % (c["id"], k)] = v
        except Exception as e:  # reported to the Lua side as a failed check
            errors[c["id"]] = "%s: %s" % (type(e).__name__, e)
    st.save(sys.argv[2], out, {"errors": json.dumps(errors)})


if __name__ == "__main__":
    main()
