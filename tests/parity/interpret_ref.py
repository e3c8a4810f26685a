"""PyTorch references for aviary.interpret (tests/lua/test_interpret.lua), with torch autograd
directly (Captum is not installed): the same formulas as captum.attr.

usage: interpret_ref.py weights.safetensors inputs.safetensors out.safetensors
The model is torchvision's resnet18 with the number of classes of the weights' fc, in eval mode.
inputs: x (N x 3 x H x W), base (IG baseline of the riemann case), targets (N, 1-based).
Writes: saliency, ixg, ig_gl (gausslegendre, 50 steps, zero baseline), ig_rt (riemann_trapezoid,
10 steps, baseline `base`; both IG in float64), gradcam (layer4), guided (GuidedBackprop), deconv (Deconvolution),
guided_gradcam (nearest), guided_gradcam_bl (bilinear), leg_x / leg_w (numpy's leggauss(50))."""
import os
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(__file__))
import st  # noqa: E402

torch.set_num_threads(2)


class GuidedReLU(torch.autograd.Function):
    """ReLU whose backward is grad * (out > 0) * (grad > 0) (mode guided) or relu(grad) (deconv)."""
    mode = "guided"

    @staticmethod
    def forward(ctx, x):
        out = x.clamp(min=0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        gp = g.clamp(min=0)
        if GuidedReLU.mode == "guided":
            return gp * (out > 0).to(g.dtype)
        return gp


class ReLUMod(torch.nn.Module):
    def forward(self, x):
        return GuidedReLU.apply(x)


def build(path):
    sd, _ = st.load(path)
    m = torchvision.models.resnet18(num_classes=sd["fc.weight"].shape[0])
    m.load_state_dict(sd, strict=True)
    return m.eval()


def relu_swapped(m):
    """a copy of m with every nn.ReLU replaced by the guided/deconv one (torchvision's ResNet calls
    its ReLU modules only, as Captum's GuidedBackprop hooks them)."""
    import copy
    g = copy.deepcopy(m)
    for name, mod in list(g.named_modules()):
        for cname, child in list(mod.named_children()):
            if isinstance(child, torch.nn.ReLU):
                setattr(mod, cname, ReLUMod())
    return g


def grad(m, x, t):
    x = x.detach().clone().requires_grad_(True)
    out = m(x)
    sel = out.gather(1, t.view(-1, 1)).sum()
    (g,) = torch.autograd.grad(sel, x)
    return g


def approximation(method, n):
    if method == "gausslegendre":
        xs, ws = np.polynomial.legendre.leggauss(n)
        return list(0.5 * ws), list(0.5 * (1 + xs))
    if method == "riemann_trapezoid":
        steps = [1 / (2 * (n - 1))] + [1 / (n - 1)] * (n - 2) + [1 / (2 * (n - 1))]
        return steps, list(np.linspace(0, 1, n))
    steps = [1 / n] * n
    if method == "riemann_left":
        return steps, list(np.linspace(0, 1 - 1 / n, n))
    if method == "riemann_right":
        return steps, list(np.linspace(1 / n, 1, n))
    return steps, list(np.linspace(1 / (2 * n), 1 - 1 / (2 * n), n))


def integrated_gradients(m, x, base, t, n, method):
    steps, alphas = approximation(method, n)
    scaled = torch.cat([base + a * (x - base) for a in alphas], 0)
    g = grad(m, scaled, t.repeat(n))
    g = g.view(n, *x.shape) * torch.tensor(steps, dtype=x.dtype).view(n, 1, 1, 1, 1)
    return g.sum(0) * (x - base)


def gradcam(m, x, t, layer):
    acts = {}
    h = getattr(m, layer).register_forward_hook(lambda mod, i, o: acts.__setitem__("a", o))
    xi = x.detach().clone().requires_grad_(True)
    out = m(xi)
    h.remove()
    a = acts["a"]
    (g,) = torch.autograd.grad(out.gather(1, t.view(-1, 1)).sum(), a)
    w = g.mean(dim=(2, 3), keepdim=True)
    return (w * a).sum(1, keepdim=True).detach()


def main():
    m = build(sys.argv[1])
    inp, _ = st.load(sys.argv[2])
    x, base, t = inp["x"], inp["base"], inp["targets"].long() - 1
    out = {}
    out["saliency"] = grad(m, x, t).abs()
    out["ixg"] = x * grad(m, x, t)
    # IG in float64: among 100 interpolated images some ReLU input lies within float32 rounding of zero
    # (1e-7 relative), where either side's float32 forward may switch the unit and change that image's gradient
    import copy
    m64, x64 = copy.deepcopy(m).double(), x.double()
    out["ig_gl"] = integrated_gradients(m64, x64, torch.zeros_like(x64), t, 50, "gausslegendre")
    out["ig_rt"] = integrated_gradients(m64, x64, base.double(), t, 10, "riemann_trapezoid")
    out["gradcam"] = gradcam(m, x, t, "layer4")
    g = relu_swapped(m)
    GuidedReLU.mode = "guided"
    out["guided"] = grad(g, x, t)
    cam = torch.nn.functional.interpolate(gradcam(m, x, t, "layer4").clamp(min=0), size=x.shape[2:], mode="nearest")
    out["guided_gradcam"] = out["guided"] * cam
    cam = torch.nn.functional.interpolate(gradcam(m, x, t, "layer4").clamp(min=0), size=x.shape[2:], mode="bilinear",
                                          align_corners=False)
    out["guided_gradcam_bl"] = out["guided"] * cam
    GuidedReLU.mode = "deconv"
    out["deconv"] = grad(g, x, t)
    xs, ws = np.polynomial.legendre.leggauss(50)
    out["leg_x"] = torch.from_numpy(xs)
    out["leg_w"] = torch.from_numpy(ws)
    with torch.no_grad():
        out["logits"] = m(x)
    st.save(sys.argv[3], {k: v.detach().contiguous() for k, v in out.items()})


if __name__ == "__main__":
    main()
