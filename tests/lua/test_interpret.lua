-- aviary.interpret: Captum's attribution methods. Parity with the same formulas written with torch
-- autograd (tests/parity/interpret_ref.py) on a torchvision ResNet-18 loaded from aviary's weights;
-- properties (IG completeness, Occlusion against a direct loop, Shapley values of a linear function,
-- NoiseTunnel relations, GradientShap against IG, LayerIntegratedGradients completeness); the study's
-- settings; errors.
local av = require "aviary"
local nn = require "aviary.nn"
local models = require "aviary.models"
local interpret = require "aviary.interpret"

local REF = av_test.root .. "/tests/parity/interpret_ref.py"

local function rel(a, b)
  local m = b:double():abs():max():item()
  return (a:double() - b:double()):abs():max():item() / math.max(m, 1e-12)
end

local function note(fmt, ...) print(("#   " .. fmt):format(...)) end

-- a small CNN for the property tests
local function tiny(c_in, classes)
  av.manual_seed(7)
  local net = nn.Sequential(nn.Conv2d(c_in, 6, 3, {padding = 1}), nn.ReLU(), nn.Conv2d(6, 6, 3, {padding = 1}),
    nn.ReLU(), nn.AdaptiveAvgPool2d({1, 1}), nn.Flatten(), nn.Linear(6, classes))
  return net:evaluate()
end

-- the parity model: ResNet-18 with 5 classes, batch-norm statistics and affine made non-trivial
local resnet, resnet_x
local function parity_model()
  if resnet then return resnet, resnet_x end
  av.manual_seed(11)
  resnet = models.create("resnet18", {num_classes = 5})
  av.no_grad(function()
    for _, m in ipairs(resnet:modules()) do
      if m:type_name() == "BatchNorm2d" then
        m.running_mean:copy_(av.randn(m.running_mean:size(1)) * 0.1)
        m.running_var:copy_(av.rand(m.running_var:size(1)) * 0.5 + 0.75)
        m.weight:copy_(av.rand(m.weight:size(1)) * 0.5 + 0.75)
        m.bias:copy_(av.randn(m.bias:size(1)) * 0.1)
      end
    end
  end)
  resnet:evaluate()
  resnet_x = av.randn(2, 3, 64, 64)
  return resnet, resnet_x
end

local ref, ref_err, ref_base
local TARGETS = {1, 5} -- classes whose layer4 Grad-CAM has positive parts for these inputs (GuidedGradCam is not all 0)
local function reference()
  if ref or ref_err then return ref, ref_err end
  local model, x = parity_model()
  local w, inp, out = av_test.tmpname(".safetensors"), av_test.tmpname(".safetensors"), av_test.tmpname(".safetensors")
  model:save(w)
  av.manual_seed(5)
  av.save(inp, {x = x, base = av.randn(1, 3, 64, 64):expand(2, 3, 64, 64):contiguous() * 0.3,
                targets = av.tensor(TARGETS)})
  local ok, msg = av_test.python(REF, w, inp, out)
  if ok then ref = av.load(out) else ref_err = msg end
  ref_base = av.load(inp).base
  os.remove(w); os.remove(inp); os.remove(out)
  return ref, ref_err
end

local function need_ref()
  if not av_test.have_torch() then skip("python3-torch not installed") end
  local r, err = reference()
  assert.truthy(r, "interpret_ref.py failed: " .. tostring(err))
  return r
end

local function check(name, got, want)
  local e = rel(got, want)
  note("parity %-16s max error %.3g (relative to the max |value|)", name, e)
  assert.truthy(e <= 1e-4, ("%s differs from torch: %.3g"):format(name, e))
end

describe("parity with torch autograd (ResNet-18, 2 x 3 x 64 x 64)", function()
  it("logits and the Gauss-Legendre nodes match", function()
    local r = need_ref()
    local model, x = parity_model()
    check("logits", av.no_grad(function() return model(x) end), r.logits)
    local steps, alphas = interpret.approximation("gausslegendre", 50)
    for k = 1, 50 do
      assert.near(alphas[k], 0.5 * (1 + r.leg_x[k]), 1e-14)
      assert.near(steps[k], 0.5 * r.leg_w[k], 1e-14)
    end
  end)

  it("Saliency and InputXGradient", function()
    local r = need_ref()
    local model, x = parity_model()
    check("Saliency", interpret.Saliency(model):attribute(x, {target = TARGETS}), r.saliency)
    check("InputXGradient", interpret.InputXGradient(model):attribute(x, {target = av.tensor(TARGETS)}), r.ixg)
  end)

  it("IntegratedGradients (float64): gausslegendre 50 steps and riemann_trapezoid", function()
    -- in float64 on both sides: among the 100 interpolated images, a ReLU input within float32 rounding
    -- of zero switches the unit on one side and not the other (seen: 3% on one image's gradient)
    local r = need_ref()
    local model, x = parity_model()
    local path = av_test.tmpname(".safetensors")
    model:save(path)
    local m64 = models.create("resnet18", {num_classes = 5, weights = path}):double():evaluate()
    os.remove(path)
    local ig = interpret.IntegratedGradients(m64)
    check("IG gausslegendre", ig:attribute(x:double(), {target = TARGETS, internal_batch_size = 50}), r.ig_gl)
    check("IG riemann_trap", ig:attribute(x:double(), {target = TARGETS, n_steps = 10, method = "riemann_trapezoid",
                                                        baselines = ref_base:narrow(1, 1, 1):double()}), r.ig_rt)
  end)

  it("LayerGradCam, GuidedBackprop, Deconvolution, GuidedGradCam", function()
    local r = need_ref()
    local model, x = parity_model()
    local cam = interpret.LayerGradCam(model, "layer4"):attribute(x, {target = TARGETS})
    assert.same(cam:size(), {2, 1, 2, 2})
    check("LayerGradCam", cam, r.gradcam)
    check("GuidedBackprop", interpret.GuidedBackprop(model):attribute(x, {target = TARGETS}), r.guided)
    assert.equal(0, av._attr.get_relu_grad_mode(), "ReLU gradient mode restored")
    check("Deconvolution", interpret.Deconvolution(model):attribute(x, {target = TARGETS}), r.deconv)
    for i = 1, 2 do assert.truthy(r.guided_gradcam[i]:abs():max():item() > 0, "an all-zero GuidedGradCam reference") end
    check("GuidedGradCam", interpret.GuidedGradCam(model, "layer4"):attribute(x, {target = TARGETS}), r.guided_gradcam)
    check("GuidedGradCam bilinear", interpret.GuidedGradCam(model, "layer4"):attribute(x, {target = TARGETS,
      interpolate_mode = "bilinear"}), r.guided_gradcam_bl)
    -- the plain gradient is back to normal afterwards
    check("Saliency after", interpret.Saliency(model):attribute(x, {target = TARGETS}), r.saliency)
  end)
end)

describe("properties", function()
  it("IntegratedGradients is complete at 200 steps and its delta agrees", function()
    local net = tiny(3, 4)
    av.manual_seed(3)
    local x, b = av.randn(3, 3, 8, 8), av.randn(1, 3, 8, 8) * 0.5
    local ig = interpret.IntegratedGradients(net)
    for _, method in ipairs({"gausslegendre", "riemann_middle"}) do
      local attr, delta = ig:attribute(x, {baselines = b, target = 2, n_steps = 200, method = method,
                                           return_convergence_delta = true, internal_batch_size = 90})
      local fx = av.no_grad(function() return net(x) end):select(2, 2):double()
      local fb = av.no_grad(function() return net(b:expand(3, 3, 8, 8)) end):select(2, 2):double()
      local sums = attr:double():reshape(3, -1):sum(2)
      for i = 1, 3 do
        local want = fx[i] - fb[i]
        assert.truthy(math.abs(sums[i] - want) <= 0.01 * math.abs(want) + 1e-6,
          ("%s: sum %.6g vs f(x) - f(b) %.6g"):format(method, sums[i], want))
        assert.near(delta[i], sums[i] - want, 1e-5)
      end
    end
    -- internal_batch_size does not change the result; multiply_by_inputs = false gives the integral alone
    local a1 = ig:attribute(x, {target = 1, n_steps = 7})
    local a2 = ig:attribute(x, {target = 1, n_steps = 7, internal_batch_size = 4})
    assert.truthy(rel(a1, a2) < 1e-6)
    local g = interpret.IntegratedGradients(net, {multiply_by_inputs = false}):attribute(x, {target = 1, n_steps = 7})
    assert.truthy(rel(g * x, a1) < 1e-5)
  end)

  it("Occlusion equals a direct loop over the windows, for any perturbations_per_eval", function()
    local net = tiny(2, 3)
    av.manual_seed(4)
    local x = av.randn(2, 2, 6, 7)
    local occ = interpret.Occlusion(net)
    local opts = {sliding_window_shapes = {1, 3, 3}, strides = {1, 2, 2}, target = {1, 3}, baselines = 0.5}
    local a1 = occ:attribute(x, opts)
    opts.perturbations_per_eval = 3
    local a3 = occ:attribute(x, opts)
    assert.truthy(rel(a1, a3) < 1e-6, "perturbations_per_eval 1 and 3 differ")
    -- direct: windows start at 0, 2, 4 (H: 6 - 3 = 3 -> ceil(3 / 2) + 1 = 3 positions, the last clipped)
    local f = function(t) return av.no_grad(function() return net(t) end) end
    local f0 = f(x)
    local sum, cnt = av.zeros(2, 2, 6, 7):double(), av.zeros(2, 6, 7):double()
    local nwin = 0
    for c = 1, 2 do
      for h = 1, 5, 2 do
        for w = 1, 7, 2 do
          if w <= 5 then
            nwin = nwin + 1
            local hl, wl = math.min(3, 7 - h), math.min(3, 8 - w)
            local xa = x:clone()
            xa[{{}, c, {h, h + hl - 1}, {w, w + wl - 1}}] = 0.5
            local fa = f(xa)
            for i, t in ipairs({1, 3}) do
              local d = f0[i][t] - fa[i][t]
              sum[{i, c, {h, h + hl - 1}, {w, w + wl - 1}}]:add_(d)
            end
            cnt[{c, {h, h + hl - 1}, {w, w + wl - 1}}]:add_(1)
          end
        end
      end
    end
    assert.equal(2 * 3 * 3, nwin)
    assert.truthy(rel(a1, sum / cnt) < 1e-5, ("Occlusion differs from the direct loop: %.3g"):format(rel(a1, sum / cnt)))
  end)

  it("ShapleyValueSampling of a linear function is w * (x - baseline), per feature group", function()
    av.manual_seed(9)
    local w = av.randn(1, 2, 3, 4)
    local f = function(t) return (t * w):reshape(t:size(1), -1):sum(2, true) end
    local x, b = av.randn(2, 2, 3, 4), av.randn(1, 2, 3, 4)
    local svs = interpret.ShapleyValueSampling(f)
    local a = svs:attribute(x, {baselines = b, target = 1, n_samples = 3, seed = 1})
    assert.truthy(rel(a, w * (x - b)) < 1e-5)
    -- groups: one feature per 2 x 2 block of each channel (ids 1..12 over 2 x 3 x 4, shared by the batch)
    local fm = av.zeros(2, 3, 4):long()
    local id = 0
    for c = 1, 2 do for h = 1, 3 do for q = 1, 2 do
      id = id + 1
      fm[{c, h, {2 * q - 1, 2 * q}}] = id
    end end end
    local ag = svs:attribute(x, {baselines = b, target = 1, n_samples = 2, feature_mask = fm:unsqueeze(1),
                                 perturbations_per_eval = 4})
    local contrib = w * (x - b)
    local want = av.zeros(2, 2, 3, 4)
    for c = 1, 2 do for h = 1, 3 do for q = 1, 2 do
      local s = contrib[{{}, c, h, {2 * q - 1, 2 * q}}]:sum(2, true)
      want[{{}, c, h, {2 * q - 1, 2 * q}}] = s:expand(2, 2)
    end end end
    assert.truthy(rel(ag, want) < 1e-5)
  end)

  it("NoiseTunnel: stdevs 0 is the wrapped method; smoothgrad_sq and vargrad relations; seeds repeat", function()
    local net = tiny(3, 4)
    av.manual_seed(2)
    local x = av.randn(2, 3, 8, 8)
    local sal = interpret.Saliency(net)
    local nt = interpret.NoiseTunnel(sal)
    local plain = sal:attribute(x, {target = 2})
    assert.truthy(rel(nt:attribute(x, {target = 2, stdevs = 0, nt_samples = 3}), plain) < 1e-6)
    local sq = nt:attribute(x, {target = 2, stdevs = 0, nt_samples = 3, nt_type = "smoothgrad_sq"})
    assert.truthy(rel(sq, plain * plain) < 1e-5)
    local var = nt:attribute(x, {target = 2, stdevs = 0, nt_samples = 3, nt_type = "vargrad"})
    assert.truthy(var:abs():max():item() <= 1e-6 * plain:abs():max():item() ^ 2 + 1e-12)
    -- with noise: vargrad = smoothgrad_sq - smoothgrad^2 on the same draws
    local o = {target = 2, stdevs = 0.3, nt_samples = 4, nt_samples_batch_size = 3, seed = 5}
    local m1 = nt:attribute(x, o)
    o.nt_type = "smoothgrad_sq"
    local m2 = nt:attribute(x, o)
    o.nt_type = "vargrad"
    local v = nt:attribute(x, o)
    assert.truthy(rel(v, m2 - m1 * m1) < 1e-4)
    assert.truthy(rel(m1, plain) > 1e-3, "noise changed nothing")
    o.nt_type = nil
    assert.truthy(rel(nt:attribute(x, o), m1) == 0, "a seed must repeat the draws")
    -- wrapping IntegratedGradients passes its options through
    local ig = interpret.IntegratedGradients(net)
    local a = interpret.NoiseTunnel(ig):attribute(x, {target = 1, stdevs = 0, nt_samples = 2, n_steps = 5,
                                                       baselines = av.zeros(2, 3, 8, 8)})
    assert.truthy(rel(a, ig:attribute(x, {target = 1, n_steps = 5})) < 1e-5)
  end)

  it("GradientShap: one zero baseline and stdevs 0 approximates IG; a seed repeats", function()
    local net = tiny(3, 4)
    av.manual_seed(8)
    local x = av.randn(1, 3, 8, 8)
    local gs = interpret.GradientShap(net)
    local a, delta = gs:attribute(x, {baselines = av.zeros(1, 3, 8, 8), n_samples = 300, target = 3, seed = 1,
                                      return_convergence_delta = true})
    assert.equal(300, delta:size(1))
    local ig = interpret.IntegratedGradients(net):attribute(x, {target = 3, n_steps = 100})
    local e = rel(a, ig)
    note("GradientShap (300 samples) vs IG: relative difference %.3g", e)
    assert.truthy(e < 0.25, ("GradientShap is far from IG: %.3g"):format(e))
    local s1 = gs:attribute(x, {baselines = av.cat({x * 0, x * 0.5}, 1), n_samples = 6, stdevs = 0.1, target = 3, seed = 42})
    local s2 = gs:attribute(x, {baselines = av.cat({x * 0, x * 0.5}, 1), n_samples = 6, stdevs = 0.1, target = 3, seed = 42})
    assert.truthy(rel(s1, s2) == 0)
  end)

  it("LayerIntegratedGradients is complete at layer4; LayerActivation gives the layer's output", function()
    local model, x = parity_model()
    local lig = interpret.LayerIntegratedGradients(model, "layer4")
    local attr, delta = lig:attribute(x, {target = TARGETS, n_steps = 32, internal_batch_size = 32,
                                          return_convergence_delta = true})
    assert.same(attr:size(), {2, 512, 2, 2})
    local fx = av.no_grad(function() return model(x) end)
    local fb = av.no_grad(function() return model(x * 0) end)
    local sums = attr:double():reshape(2, -1):sum(2)
    for i = 1, 2 do
      local want = fx[i][TARGETS[i]] - fb[i][TARGETS[i]]
      assert.truthy(math.abs(sums[i] - want) <= 0.01 * math.abs(want) + 1e-5,
        ("sum %.6g vs f(x) - f(b) %.6g"):format(sums[i], want))
      assert.near(delta[i], sums[i] - want, 1e-4)
    end
    local act = interpret.LayerActivation(model, "layer4"):attribute(x)
    assert.same(act:size(), {2, 512, 2, 2})
    local inp = interpret.LayerActivation(model, "fc"):attribute(x, {attribute_to_layer_input = true})
    assert.truthy(rel(inp, act:mean({3, 4})) < 1e-5)
    assert.falsy(act.requires_grad)
  end)

  it("leaves .grad of parameters and inputs alone and returns detached tensors", function()
    local net = tiny(3, 4)
    local x = av.randn(2, 3, 8, 8)
    local xr = x:clone():requires_grad_()
    for _, a in ipairs({interpret.Saliency(net):attribute(xr, {target = 1}),
                        interpret.GuidedBackprop(net):attribute(xr),
                        interpret.LayerGradCam(net, "2"):attribute(xr, {target = 1}),
                        interpret.IntegratedGradients(net):attribute(xr, {n_steps = 3})}) do
      assert.falsy(a.requires_grad)
    end
    assert.truthy(xr.grad == nil)
    for _, p in ipairs(net:parameters()) do assert.truthy(p.grad == nil and p.requires_grad) end
  end)
end)

describe("the study's settings", function()
  it("GradientShap n_samples 75, stdevs 1e-4, baselines cat(0 * x, 1 * x); Occlusion 3x15x15 stride 3x8x8", function()
    local model, x2 = parity_model()
    local x = x2:narrow(1, 1, 1)
    local a = interpret.GradientShap(model):attribute(x, {baselines = av.cat({x * 0, x * 1}, 1), n_samples = 75,
                                                          stdevs = 1e-4, target = 2, seed = 0})
    assert.same(a:size(), {1, 3, 64, 64})
    assert.truthy(a:isfinite():all():item() == 1)
    local occ = interpret.Occlusion(model):attribute(x, {sliding_window_shapes = {3, 15, 15}, strides = {3, 8, 8},
                                                         target = 2, perturbations_per_eval = 25})
    assert.same(occ:size(), {1, 3, 64, 64})
    assert.truthy(occ:isfinite():all():item() == 1, "every element is covered by a window")
  end)
end)

describe("errors", function()
  local net = tiny(3, 4)
  local x = av.randn(2, 3, 8, 8)
  it("a target out of range, or of the wrong count", function()
    assert.error_matches(function() interpret.Saliency(net):attribute(x, {target = 5}) end,
      "Saliency: target 1 is out of range: 5, the model gives 4 classes")
    assert.error_matches(function() interpret.IntegratedGradients(net):attribute(x, {target = {1, 0}}) end,
      "IntegratedGradients: target 2 is out of range: 0")
    assert.error_matches(function() interpret.Occlusion(net):attribute(x, {target = {1, 2, 3},
      sliding_window_shapes = {3, 2, 2}}) end, "Occlusion: target must be a number or a list of 2 class numbers")
  end)
  it("restores the ReLU gradient mode when the attribution fails", function()
    assert.error_matches(function() interpret.GuidedBackprop(net):attribute(x, {target = 9}) end, "out of range")
    assert.equal(0, av._attr.get_relu_grad_mode())
    for _, p in ipairs(net:parameters()) do assert.truthy(p.requires_grad, "parameters require grad again") end
    assert.error_matches(function() av._attr.set_relu_grad_mode(3) end, "relu gradient mode must be 0, 1 or 2")
  end)
  it("a layer that does not exist lists the layers", function()
    assert.error_matches(function() interpret.LayerGradCam(net, "layer9") end,
      "LayerGradCam: the model has no layer 'layer9' (its layers: 0, 1, 2")
    local model = parity_model()
    assert.error_matches(function() interpret.LayerIntegratedGradients(model, "layer5") end,
      "LayerIntegratedGradients: the model has no layer 'layer5' (nearest: layer1")
  end)
  it("an occlusion window larger than the input, or strides past the window", function()
    assert.error_matches(function() interpret.Occlusion(net):attribute(x, {sliding_window_shapes = {3, 9, 2}}) end,
      "Occlusion: sliding_window_shapes 3x9x2 is larger than an example of the input (3x8x8)")
    assert.error_matches(function() interpret.Occlusion(net):attribute(x, {sliding_window_shapes = {3, 2}}) end,
      "Occlusion: sliding_window_shapes must give 3 numbers")
    assert.error_matches(function() interpret.Occlusion(net):attribute(x, {sliding_window_shapes = {3, 2, 2},
      strides = {1, 3, 1}}) end, "Occlusion: strides 1x3x1 must not exceed sliding_window_shapes 3x2x2")
    assert.error_matches(function() interpret.Occlusion(net):attribute(x, {}) end,
      "Occlusion: sliding_window_shapes is required")
  end)
  it("a baseline of the wrong size", function()
    assert.error_matches(function() interpret.IntegratedGradients(net):attribute(x, {baselines = av.zeros(3, 3, 8, 8)}) end,
      "IntegratedGradients: baselines of size 3x3x8x8 do not match the input of size 2x3x8x8 (give 2x3x8x8 or 1x3x8x8)")
    assert.error_matches(function() interpret.GradientShap(net):attribute(x, {baselines = av.zeros(2, 3, 4, 4)}) end,
      "GradientShap: baselines of size 2x3x4x4 do not match the input of size 2x3x8x8 (give B x 3x8x8)")
    assert.error_matches(function() interpret.GradientShap(net):attribute(x, {}) end,
      "GradientShap: baselines must be a tensor")
    assert.error_matches(function() interpret.Occlusion(net):attribute(x, {sliding_window_shapes = {1, 2, 2},
      baselines = av.zeros(2, 3, 7, 8)}) end, "Occlusion: baselines of size 2x3x7x8 do not match")
  end)
  it("an unknown option lists the valid ones", function()
    assert.error_matches(function() interpret.IntegratedGradients(net):attribute(x, {n_step = 5}) end,
      "IntegratedGradients: unknown option 'n_step' (did you mean 'n_steps'?) (valid: baselines, internal_batch_size, method, n_steps, return_convergence_delta, target)")
    assert.error_matches(function() interpret.NoiseTunnel(interpret.Saliency(net)):attribute(x, {nt_sample = 2}) end,
      "NoiseTunnel: unknown option 'nt_sample' (did you mean 'nt_samples'?)")
    assert.error_matches(function() interpret.IntegratedGradients(net):attribute(x, {method = "riemann"}) end,
      "IntegratedGradients: method must be one of gausslegendre, riemann_left")
    assert.error_matches(function() interpret.NoiseTunnel(interpret.Saliency(net)):attribute(x, {nt_type = "smooth"}) end,
      "NoiseTunnel: nt_type must be 'smoothgrad', 'smoothgrad_sq' or 'vargrad'")
    assert.error_matches(function() interpret.ShapleyValueSampling(net):attribute(x, {feature_mask = av.zeros(1, 3, 5, 8):long()}) end,
      "ShapleyValueSampling: feature_mask of size 1x3x5x8 does not broadcast to an example of the input (3x8x8)")
    assert.error_matches(function() interpret.Saliency(42) end, "Saliency: forward_func must be an nn.Module or a function")
  end)
  it("methods() and get()", function()
    local names = interpret.methods()
    assert.equal(13, #names)
    for _, n in ipairs(names) do assert.equal(interpret[n], interpret.get(n)) end
    assert.error_matches(function() interpret.get("Saliancy") end, "did you mean 'Saliency'")
  end)
end)
