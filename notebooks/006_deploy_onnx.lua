--[[md
# 006 · Deploy through ONNX

A trained model is only useful where it can run. The study's last notebook exports the classifier
to ONNX — one file that ONNX Runtime runs from Python, C++, C#, JavaScript or a phone — and checks
that ONNX Runtime predicts what the training framework predicts, then classifies new photographs.

This notebook does the same with `aviary.onnx` (the module behind `recipes/export_onnx.lua` and
`recipes/predict.lua`): export the run of `002_train.lua` with its class names and preprocessing
in the file's metadata, run the file in ONNX Runtime (`onnxruntime-node`, through
`tools/node/ort_run.js`, as the recipe does), classify a real photograph, and import the file
back into aviary. Run 002 first: without its run folder this notebook stops and says so. See
`docs/deploy.md` for the Python, C++ and JavaScript code that uses the file elsewhere.
]]
NB = require("aviary.notebook").setup(...)
av = require "aviary"
run = require "aviary.run"
onnx = require "aviary.onnx"
image = require "aviary.image"
ev = require "aviary.evaluation"
json = require "aviary.json"

-- %%
--[[md
## The setting
]]
CUB = os.getenv("AVIARY_CUB")        -- the extracted CUB_200_2011 folder; nil: synthetic
W = require("aviary.notebook.walkthrough").setting(NB, CUB)
CUB, SOURCE, IMAGES, DATA_DIR, RUN, exists = W.cub, W.source, W.images, W.data_dir, W.run, W.exists
W.need_run()
r = run.open(RUN)
cfg = r.cfg
av.set_num_threads(cfg.SYSTEM.threads)
net, info = run.model(r, {checkpoint = "best"})
test_ds = run.dataset(cfg, "test")
names = ev.display_names(test_ds.classes)
C = cfg.DATA.crop
print(("%s: %s, %s, %d classes, %d px"):format(r.name, cfg.MODEL.name, info.file,
  #test_ds.classes, C))

-- %%
--[[md
## Export

`onnx.export` traces one forward pass in evaluation mode and writes the graph (opset 17): Conv,
BatchNormalization, Relu, MaxPool, Add, GlobalAveragePool, Flatten, Gemm. The batch dimension is
dynamic, and the metadata carries what a user of the file needs and would otherwise have to guess:
the class names in output order and the preprocessing (resize, crop, mean, std).
]]
MODEL = RUN .. "/model.onnx"
t0 = av.clock()
onnx.export(net, av.zeros(1, 3, C, C), MODEL, {opset = 17, dynamic_batch = true,
  metadata = {class_names = test_ds.classes, input_size = C, resize_size = cfg.DATA.resize,
              mean = image.IMAGENET_MEAN, std = image.IMAGENET_STD, interpolation = "bilinear",
              model = cfg.MODEL.name, run = r.name, checkpoint = info.file}})
f = io.open(MODEL, "rb"); size = f:seek("end"); f:close()
print(("wrote %s: %.1f MB in %.2f s"):format(MODEL, size / 2 ^ 20, av.clock() - t0))

-- %%
--[[md
## ONNX Runtime agrees

The same test images through aviary and through ONNX Runtime: the logits should agree to float
rounding (about 1e-6 relative) and the predicted classes exactly. `tools/node/ort_run.js` reads
the inputs from a safetensors file and writes ONNX Runtime's outputs to another.
]]
N = NB.quick and 4 or 16
xs = {}
for i = 1, test_ds:size(), math.max(1, test_ds:size() // N) do
  if #xs < N then xs[#xs + 1] = test_ds:get(i).input end
end
X = av.stack(xs)
ours = av.no_grad(function() return net(X) end)
ORT = NB.root .. "/tools/node/ort_run.js"
have_ort = os.execute("command -v node >/dev/null 2>&1") == true
  and exists(NB.root .. "/tools/node/node_modules/onnxruntime-node")
function ort(model, x)   -- ONNX Runtime's output for x (nil when it is not installed)
  if not have_ort then return nil end
  local tmp = os.tmpname()
  av.save(tmp .. ".in.safetensors", {input = x})
  local p = io.popen(("node '%s' '%s' '%s' '%s' --threads %d 2>&1"):format(ORT, model,
    tmp .. ".in.safetensors", tmp .. ".out.safetensors", cfg.SYSTEM.threads))
  local text = p:read("a")
  local ok = p:close()
  os.remove(tmp .. ".in.safetensors"); os.remove(tmp)
  if not ok then error("ONNX Runtime failed: " .. text, 0) end
  local out = av.load(tmp .. ".out.safetensors")
  os.remove(tmp .. ".out.safetensors")
  return out.output
end
theirs = ort(MODEL, X)
if theirs then
  local rel = ((theirs - ours):abs():max() / ours:abs():max()):item()
  local _, a = ours:max(2)
  local _, b = theirs:max(2)
  print(("ONNX Runtime on %d test images: logits equal aviary's to %.1e (relative)"):format(N,
    rel))
  print(("top-1 agreement %d/%d"):format(a:eq(b):sum():item(), N))
else
  print("ONNX Runtime is not installed (make test-deps installs node's onnxruntime-node): "
    .. "comparison skipped")
end

-- %%
--[[md
## A real photograph

The file alone is enough to classify a new image: read the preprocessing from its metadata,
resize the short side, centre-crop, normalise, run, softmax. Here a real photograph of a bird
(`../shared/photos/eagle.jpg`, a bald eagle). Be clear about what to expect: a network trained
on the synthetic cartoons (or, on real CUB, on 200 species that do not include this photo's) can
only name the nearest of its own classes — the point is that aviary, the imported graph and ONNX
Runtime agree on the answer.
]]
PHOTO = "../shared/photos/eagle.jpg"
if not exists(PHOTO) then PHOTO = NB.root .. "/../shared/photos/eagle.jpg" end
-- no photographs here: a test image instead
if not exists(PHOTO) then PHOTO = test_ds.samples[1].path end
meta = onnx.load(MODEL).metadata   -- metadata_props; JSON values come back decoded
function decoded(v) return type(v) == "string" and json.decode(v) or v end
pre, classes = decoded(meta.preprocessing), decoded(meta.class_names)
print(("metadata: %d class names; preprocessing %s"):format(#classes, json.encode(pre)))
photo = image.load(PHOTO)
crop = image.center_crop(image.resize(photo, pre.resize_size), pre.input_size)
display(crop, {caption = ("%s, resized to %d and centre-cropped to %d as the metadata says")
  :format(PHOTO:match("([^/]+)$"), pre.resize_size, pre.input_size)})
x = image.to_float(crop, {mean = pre.mean, std = pre.std}):unsqueeze(1)

-- %%
--[[md
## Import it back

`onnx.load` turns any supported ONNX file into an aviary module that runs the graph with aviary's
own operators — forward *and* backward, so an imported network (torchvision's ImageNet ResNets,
exported once wherever PyTorch is) can be fine-tuned here. Our own file comes back with its
metadata; all three runtimes now classify the photograph.
]]
graph = onnx.load(MODEL)
graph:evaluate()
print(("imported: opset %d, %d parameter tensors"):format(graph.opset, #graph:parameters()))
results = {}
for _, who in ipairs({{"aviary (trained model)", function(t) return net(t) end},
                      {"aviary (imported ONNX graph)", function(t) return graph(t) end},
                      {"ONNX Runtime", function(t) return ort(MODEL, t) end}}) do
  local logits = av.no_grad(function() return who[2](x) end)
  if logits then
    local p, k = av.softmax(logits:double(), 2):topk(3, 2)
    p, k = p:view(-1):tolist(), k:view(-1):tolist()
    local top = {}
    for j = 1, 3 do
      top[j] = ("%s %.1f%%"):format(ev.short_name(names[k[j]], 28), 100 * p[j])
    end
    results[#results + 1] = {runtime = who[1], top3 = table.concat(top, ", ")}
  end
end
display(results, {caption = "Top-3 classes for the photograph, by runtime",
  columns = {"runtime", "top3"}})
diff = av.no_grad(function() return (graph(X) - ours):abs():max() / ours:abs():max() end)
print(("imported graph vs trained model on the %d test images: %.1e relative"):format(N,
  diff:item()))

-- %%
--[[md
## From the command line

`recipes/predict.lua` is the deployable end of all this: give it the `.onnx` file (or the run
folder) and images; it reads the class names and preprocessing from the metadata.
]]
cmd = ("%s/bin/aviary recipes/predict.lua --model %s --image %s --topk 3"):format(NB.root,
  MODEL, PHOTO)
print("$ " .. cmd:gsub(NB.root .. "/", ""))
p = io.popen(cmd .. " 2>&1")
print(p:read("a"))
p:close()
