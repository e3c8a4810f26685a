--- One-line documentation of every function and tensor method, shown by the
-- REPL's `? name` / `:help name` and checked for completeness by the tests.
-- Keys: "av.<name>" for module functions, "Tensor:<name>" for methods.
-- Dims and indices are 1-based; negative values count from the end.
local d = {}

local function fn(name, line) d["av." .. name] = line end
local function m(name, line) d["Tensor:" .. name] = line end
-- functions that are both av.f(x, ...) and x:f(...)
local function both(name, line) fn(name, line); m(name, line) end

-- creation
fn("tensor", "av.tensor(nested_table | number | tensor, {dtype=}) -> new tensor; integers give int64, booleans uint8, else float32")
fn("empty", "av.empty(sizes..., {dtype='float32'}) -> uninitialised tensor")
fn("zeros", "av.zeros(sizes..., {dtype='float32'}) -> tensor of zeros; sizes as varargs or one table")
fn("ones", "av.ones(sizes..., {dtype='float32'}) -> tensor of ones")
fn("full", "av.full({sizes}, value, {dtype=}) -> tensor filled with value (int64 for an integer value)")
fn("rand", "av.rand(sizes..., {dtype=}) -> uniform samples in [0, 1)")
fn("randn", "av.randn(sizes..., {dtype=}) -> standard normal samples")
fn("randint", "av.randint([low,] high, {sizes}, {dtype='int64'}) -> integers in [low, high)")
fn("randperm", "av.randperm(n, {dtype='int64'}) -> a random permutation of 0..n-1")
fn("arange", "av.arange([start,] end [, step], {dtype=}) -> values start, start+step, ... < end (int64 for integer arguments)")
fn("linspace", "av.linspace(start, end, steps, {dtype=}) -> steps evenly spaced values from start to end inclusive")
fn("eye", "av.eye(n [, m], {dtype=}) -> identity matrix n x m")
fn("zeros_like", "av.zeros_like(x, {dtype=}) -> zeros with x's size and dtype")
fn("ones_like", "av.ones_like(x, {dtype=}) -> ones with x's size and dtype")
fn("empty_like", "av.empty_like(x, {dtype=}) -> uninitialised tensor with x's size and dtype")
fn("rand_like", "av.rand_like(x, {dtype=}) -> uniform samples with x's size")
fn("randn_like", "av.randn_like(x, {dtype=}) -> normal samples with x's size")
fn("full_like", "av.full_like(x, value, {dtype=}) -> x's size filled with value")
fn("manual_seed", "av.manual_seed(n) -- seeds the generator; results do not depend on the thread count")
fn("initial_seed", "av.initial_seed() -> the current seed")
fn("get_rng_state", "av.get_rng_state() -> the generator's state as a 16-element uint8 tensor (seed, numbers drawn); save it to resume exactly")
fn("set_rng_state", "av.set_rng_state(state) -- restores a state from av.get_rng_state(); the next draws repeat those made after it was taken")
fn("set_num_threads", "av.set_num_threads(n) -- threads for aviary's kernels and OpenBLAS")
fn("get_num_threads", "av.get_num_threads() -> number of threads")
fn("is_tensor", "av.is_tensor(v) -> true if v is a tensor")
fn("clock", "av.clock() -> wall-clock seconds from a monotonic clock, for timing")
fn("save", "av.save(path, {name=tensor,...}, {key=value,...}) -- writes a safetensors file atomically")
fn("load", "av.load(path) -> tensors (name -> tensor), metadata (key -> string), names in file order")
fn("typename", "av.typename(v) -> 'aviary.FloatTensor' etc. for tensors, else type(v)")

-- metadata and conversion
m("size", "x:size() -> table of sizes; x:size(d) -> size of dim d")
m("stride", "x:stride() -> table of strides (in elements); x:stride(d) -> one")
m("dim", "x:dim() -> number of dimensions")
m("ndimension", "x:ndimension() -> number of dimensions (Torch7 name)")
m("nDimension", "x:nDimension() -> number of dimensions (Torch7 name)")
m("nelement", "x:nelement() -> number of elements (Torch7 name)")
both("numel", "x:numel() -> number of elements")
m("dtype", "x:dtype() -> 'float32', 'float64', 'int64', 'int32', 'uint8', 'float16' or 'bfloat16'")
m("type", "x:type() -> 'aviary.FloatTensor'...; x:type(dtype) -> converted copy")
m("is_contiguous", "x:is_contiguous() -> true if elements are laid out row-major without gaps")
m("storage_offset", "x:storage_offset() -> offset of the first element in the storage (elements)")
m("device", "x:device() -> 'cpu' or 'cuda:N'")
m("is_cuda", "x:is_cuda() -> true for a tensor in GPU memory")
m("cuda", "x:cuda([index]) -> a copy on GPU `index` (default the current one); x itself if already there")
m("cpu", "x:cpu() -> a copy in CPU memory (x itself if already there)")
m("pin_memory", "x:pin_memory() -> a copy in page-locked CPU memory (fast, asynchronous copies to the GPU)")
m("is_pinned", "x:is_pinned() -> true for a tensor in page-locked CPU memory")
m("item", "x:item() -> the value of a one-element tensor as a Lua number")
m("tolist", "x:tolist() -> nested Lua tables of numbers")
m("float", "x:float() -> float32 copy (x itself if already float32)")
m("double", "x:double() -> float64 copy")
m("long", "x:long() -> int64 copy (truncates toward zero)")
m("int", "x:int() -> int32 copy")
m("byte", "x:byte() -> uint8 copy")
m("half", "x:half() -> float16 copy (storage format on the CPU)")
m("bfloat16", "x:bfloat16() -> bfloat16 copy (storage format on the CPU)")
m("to", "x:to(dtype | 'cpu' | other_tensor | {dtype=}) -> converted tensor")
both("clone", "x:clone() -> a copy with its own storage")
both("contiguous", "x:contiguous() -> x if contiguous, else a contiguous copy")
m("copy_", "x:copy_(src) -> x; copies src (broadcast, any dtype) into x")
m("fill_", "x:fill_(value) -> x; sets every element")
m("zero_", "x:zero_() -> x; sets every element to 0")
m("uniform_", "x:uniform_(lo=0, hi=1) -> x filled with uniform samples")
m("normal_", "x:normal_(mean=0, std=1) -> x filled with normal samples")
m("isTensor", "x:isTensor() -> true (Torch7 name)")

-- views
both("view", "x:view(sizes...) -> view with a new shape (one -1 inferred); errors if strides forbid it")
both("reshape", "x:reshape(sizes...) -> view when possible, else a copy")
m("view_as", "x:view_as(y) -> x viewed with y's size")
both("permute", "x:permute(d1, d2, ...) -> view with dims reordered")
both("transpose", "x:transpose(d1, d2) -> view with two dims swapped")
both("t", "x:t() -> transpose of a 2-d tensor (view)")
both("narrow", "x:narrow(dim, start, length) -> view of length entries from start (1-based)")
both("select", "x:select(dim, index) -> view with dim removed at index (1-based)")
both("expand", "x:expand(sizes...) -> view repeating size-1 dims (-1 keeps a size); no copy")
m("expand_as", "x:expand_as(y) -> x expanded to y's size")
both("squeeze", "x:squeeze([dim]) -> view without size-1 dims (or only dim)")
both("unsqueeze", "x:unsqueeze(dim) -> view with a size-1 dim inserted at dim")
both("flatten", "x:flatten([start=1 [, end=-1]]) -> dims start..end merged into one")

-- elementwise
both("add", "av.add(a, b, {alpha=1}) -> a + alpha*b with broadcasting; numbers allowed")
both("sub", "av.sub(a, b, {alpha=1}) -> a - alpha*b")
both("mul", "av.mul(a, b) -> a * b elementwise")
both("div", "av.div(a, b) -> a / b (true division: integers give float32)")
both("pow", "av.pow(a, b) -> a ^ b elementwise")
both("maximum", "av.maximum(a, b) -> elementwise max (NaN propagates)")
both("minimum", "av.minimum(a, b) -> elementwise min (NaN propagates)")
both("remainder", "av.remainder(a, b) -> a % b with the sign of b (Python's %)")
both("atan2", "av.atan2(a, b) -> atan(a/b) in the right quadrant")
for _, c in ipairs({{"eq", "=="}, {"ne", "~="}, {"lt", "<"}, {"le", "<="}, {"gt", ">"}, {"ge", ">="}}) do
  both(c[1], ("av.%s(a, b) -> uint8 tensor of (a %s b)"):format(c[1], c[2]))
end
both("logical_and", "av.logical_and(a, b) -> uint8 (a ~= 0 and b ~= 0)")
both("logical_or", "av.logical_or(a, b) -> uint8 (a ~= 0 or b ~= 0)")
both("logical_xor", "av.logical_xor(a, b) -> uint8 ((a ~= 0) ~= (b ~= 0))")
both("logical_not", "av.logical_not(x) -> uint8 (x == 0)")
local unary = {
  neg = "-x", exp = "e^x", log = "natural log", sqrt = "square root", rsqrt = "1/sqrt(x)", abs = "|x|",
  sign = "-1, 0 or 1", floor = "round down", ceil = "round up", round = "round half to even",
  trunc = "round toward zero", reciprocal = "1/x", square = "x*x", sin = "sine", cos = "cosine",
  tan = "tangent", log2 = "base-2 log", log10 = "base-10 log", log1p = "log(1+x), accurate near 0",
  expm1 = "e^x - 1, accurate near 0", exp2 = "2^x", sigmoid = "1/(1+e^-x)", tanh = "hyperbolic tangent",
  relu = "max(x, 0)", erf = "error function",
}
for name, what in pairs(unary) do
  both(name, ("av.%s(x) -> %s elementwise (integers give float32 where needed)"):format(name, what))
  m(name .. "_", ("x:%s_() -> x; %s in place"):format(name, what))
end
m("logical_not_", "x:logical_not_() -> x; in place")
both("isnan", "av.isnan(x) -> uint8 mask of NaN elements")
both("isinf", "av.isinf(x) -> uint8 mask of infinite elements")
both("isfinite", "av.isfinite(x) -> uint8 mask of finite elements")
both("clamp", "av.clamp(x, min, max) or av.clamp(x, {min=, max=}) -> x limited to [min, max]; nil = no bound")
both("clip", "av.clip(x, min, max) -> same as clamp")
m("clamp_", "x:clamp_(min, max) -> x; clamps in place")
both("where", "av.where(cond, a, b) -> a where cond ~= 0 else b (numbers allowed), broadcast")
for _, n in ipairs({"add", "sub", "mul", "div", "pow", "maximum", "minimum", "remainder"}) do
  m(n .. "_", ("x:%s_(y) -> x; in place (y broadcasts to x; result dtype must be x's)"):format(n))
end

-- reductions
both("sum", "x:sum([dims [, keepdim]]) -> sum over all or the given dim(s); integers sum to int64")
both("mean", "x:mean([dims [, keepdim]]) -> mean over all or the given dim(s)")
both("prod", "x:prod([dims [, keepdim]]) -> product")
both("max", "x:max() -> 0-d max; x:max(dim [, keepdim]) -> values, indices (1-based)")
both("min", "x:min() -> 0-d min; x:min(dim [, keepdim]) -> values, indices (1-based)")
both("amax", "x:amax(dims [, keepdim]) -> max over dims (values only)")
both("amin", "x:amin(dims [, keepdim]) -> min over dims (values only)")
both("argmax", "x:argmax([dim [, keepdim]]) -> 1-based index of the max (first on ties)")
both("argmin", "x:argmin([dim [, keepdim]]) -> 1-based index of the min")
both("all", "x:all([dims [, keepdim]]) -> uint8: every element nonzero")
both("any", "x:any([dims [, keepdim]]) -> uint8: some element nonzero")
both("var", "x:var([dims], {correction=1, keepdim=false}) -> variance (unbiased by default)")
both("std", "x:std([dims], {correction=1, keepdim=false}) -> standard deviation")
both("norm", "x:norm([p=2 [, dims [, keepdim]]]) -> p-norm (p = 1, 2, inf, -inf, 0, any number)")
both("logsumexp", "x:logsumexp(dims [, keepdim]) -> log(sum(exp(x))) computed stably")
both("cumsum", "x:cumsum(dim) -> cumulative sum along dim")
both("cumprod", "x:cumprod(dim) -> cumulative product along dim")
both("sort", "x:sort([dim=-1 [, descending=false]]) -> values, indices (1-based); stable")
both("topk", "x:topk(k [, dim=-1 [, largest=true [, sorted=true]]]) -> values, indices (1-based)")

-- indexing and joining
both("cat", "av.cat({a, b, ...}, dim=1) -> tensors joined along dim")
fn("stack", "av.stack({a, b, ...}, dim=1) -> tensors stacked along a new dim")
both("index_select", "av.index_select(x, dim, index) -> entries of x at 1-based indices along dim")
both("gather", "av.gather(x, dim, index) -> out[i][j] = x[i][index[i][j]] (for dim 2), 1-based")
both("scatter", "av.scatter(x, dim, index, src, {reduce=nil|'add'|'multiply'}) -> copy of x with src written at index")
m("scatter_", "x:scatter_(dim, index, src, {reduce=}) -> x; scatter in place")
both("masked_fill", "av.masked_fill(x, mask, value) -> copy with value where mask ~= 0")
m("masked_fill_", "x:masked_fill_(mask, value) -> x; in place")
both("masked_select", "av.masked_select(x, mask) -> 1-d tensor of elements where mask ~= 0")
both("nonzero", "av.nonzero(x) -> n x dim int64 tensor of 1-based indices of nonzero elements")

-- linear algebra
both("matmul", "av.matmul(a, b) -> matrix product with torch.matmul's rules (1-d, 2-d, batched broadcast)")
both("mm", "av.mm(a, b) -> product of two matrices (OpenBLAS for float32/float64)")
both("bmm", "av.bmm(a, b) -> batched product of B x n x k and B x k x m")
both("mv", "av.mv(a, v) -> matrix-vector product")
both("dot", "av.dot(a, b) -> 0-d inner product of two 1-d tensors")
both("addmm", "av.addmm(c, a, b, {beta=1, alpha=1}) -> beta*c + alpha*(a @ b)")

-- autograd
fn("grad", "av.grad(outputs, inputs, {grad_outputs=, retain_graph=false, allow_unused=false}) -> list of gradients of the outputs w.r.t. the inputs; .grad untouched")
fn("no_grad", "av.no_grad(fn, ...) -> fn's results, computed without recording; or `local _ <close> = av.no_grad()`")
fn("enable_grad", "av.enable_grad(fn, ...) -> fn's results with recording on; or `local _ <close> = av.enable_grad()`")
fn("set_grad_enabled", "av.set_grad_enabled(bool) -- turns graph recording on or off for this thread")
fn("is_grad_enabled", "av.is_grad_enabled() -> whether ops record the graph")
both("detach", "x:detach() -> the same data without history (never requires grad)")
m("requires_grad_", "x:requires_grad_(on=true) -> x; marks a floating point leaf as needing .grad (read x.requires_grad)")
m("backward", "y:backward([grad], {retain_graph=false}) -- accumulates dy/dleaf into each leaf's .grad (grad needed unless y has one element)")
m("retain_grad", "y:retain_grad() -- keep .grad on this non-leaf tensor during backward")
m("register_hook", "x:register_hook(function(grad) ... end) -> handle; the hook sees x's gradient and may return a replacement; handle:remove()")

-- convolution, normalisation, pooling, activations, dropout
fn("batch_norm", "av.batch_norm(x, running_mean, running_var, weight, bias, {training=false, momentum=0.1, eps=1e-5}) -> F.batch_norm over (N, C, ...); training updates the running stats in place; any of the four may be nil (running stats are needed in eval)")
fn("leaky_relu", "av.leaky_relu(x, {negative_slope=0.01}) -> x where x > 0, else x * negative_slope")
fn("elu", "av.elu(x, {alpha=1}) -> x where x > 0, else alpha * (exp(x) - 1)")
fn("gelu", "av.gelu(x, {approximate='none'|'tanh'}) -> x * Phi(x) (or its tanh approximation)")
fn("silu", "av.silu(x) -> x * sigmoid(x)")
fn("hardswish", "av.hardswish(x) -> x * clamp(x + 3, 0, 6) / 6")
fn("hardsigmoid", "av.hardsigmoid(x) -> clamp(x + 3, 0, 6) / 6")
fn("relu6", "av.relu6(x) -> clamp(x, 0, 6)")
fn("softplus", "av.softplus(x, {beta=1, threshold=20}) -> log(1 + exp(beta*x)) / beta, x where beta*x > threshold")
fn("max_pool2d", "av.max_pool2d(x, kernel_size, {stride=kernel_size, padding=0, dilation=1, ceil_mode=false, return_indices=false}) -> y [, 1-based indices within each H*W plane]; x is (N,C,H,W) or (C,H,W); sizes an integer or {h, w}")
fn("avg_pool2d", "av.avg_pool2d(x, kernel_size, {stride=kernel_size, padding=0, ceil_mode=false, count_include_pad=true, divisor_override=nil}) -> y")
fn("adaptive_avg_pool2d", "av.adaptive_avg_pool2d(x, output_size) -> y of output_size (an integer or {h, w}) with PyTorch's windows")
fn("adaptive_max_pool2d", "av.adaptive_max_pool2d(x, output_size, {return_indices=false}) -> y [, 1-based indices within each H*W plane]")
fn("dropout", "av.dropout(x, {p=0.5, training=true}) -> x with each element zeroed with probability p (av.manual_seed) and the rest scaled by 1/(1-p); x itself when not training")

-- layers, softmax, losses, resampling
fn("linear", "av.linear(x, weight [, bias]) -> x W^T + b; x of any rank >= 1 with last dim in_features, weight out x in")
both("softmax", "av.softmax(x, dim, {dtype=}) -> exp(x) / sum(exp(x)) along dim, computed stably; dtype converts x first")
both("log_softmax", "av.log_softmax(x, dim, {dtype=}) -> x - logsumexp(x) along dim")
fn("cross_entropy", "av.cross_entropy(logits, target, {weight=, ignore_index=-100, reduction='mean'|'sum'|'none', label_smoothing=0}) -> loss; logits N x C (or N x C x d..., or C), target int64 class numbers 1..C")
fn("nll_loss", "av.nll_loss(logprobs, target, {weight=, ignore_index=-100, reduction='mean'|'sum'|'none'}) -> loss; target int64 class numbers 1..C")
fn("binary_cross_entropy_with_logits", "av.binary_cross_entropy_with_logits(x, target, {weight=, pos_weight=, reduction='mean'}) -> loss, stable for large |x|")
fn("mse_loss", "av.mse_loss(x, target, {reduction='mean'|'sum'|'none'}) -> (x - target)^2 reduced; sizes must match")
fn("l1_loss", "av.l1_loss(x, target, {reduction='mean'|'sum'|'none'}) -> |x - target| reduced; sizes must match")
fn("interpolate", "av.interpolate(x, {size= | scale_factor=, mode='nearest'|'bilinear'|'linear', align_corners=, recompute_scale_factor=}) -> x resampled (N x C x H x W or N x C x W) as F.interpolate")
fn("pad", "av.pad(x, {left, right [, top, bottom, ...]}, {mode='constant'|'reflect'|'replicate'|'circular', value=0}) -> padded x as F.pad (negative constant padding crops)")

fn("conv2d", "av.conv2d(x, weight [, bias], {stride=1, padding=0|{ph,pw}|'same'|'valid', dilation=1, groups=1}) -> F.conv2d; x (N,C,H,W) or (C,H,W), weight (Co, C/groups, kh, kw)")
fn("conv2d_input", "av.conv2d_input(input_size, weight, grad_output, {stride=, padding=, dilation=, groups=}) -> gradient of conv2d with respect to its input (torch.nn.grad.conv2d_input; not recorded)")
fn("conv2d_weight", "av.conv2d_weight(input, weight_size, grad_output, {stride=, padding=, dilation=, groups=}) -> gradient with respect to the weight (torch.nn.grad.conv2d_weight; not recorded)")
fn("conv2d_algorithm", "av.conv2d_algorithm([name]) -> the CPU convolution algorithm before the call; name sets it: 'auto' (time im2col and oneDNN on each new shape, keep the faster), 'im2col' or 'onednn'")

return d
