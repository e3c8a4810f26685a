-- make bench: aviary and PyTorch side by side on the same machine and thread
-- count; prints one markdown table (op, aviary time, PyTorch time, ratio =
-- PyTorch time / aviary time, so > 1 means aviary is faster).
-- usage: aviary tests/bench/bench.lua [--threads=N] [--filter=substr] [--out=file.md]
local av = require "aviary"
local cjson = require "cjson"

local threads, filter, outfile = 2, nil, nil
for _, a in ipairs(arg) do
  threads = tonumber(a:match("^%-%-threads=(%d+)$")) or threads
  filter = a:match("^%-%-filter=(.*)$") or filter
  outfile = a:match("^%-%-out=(.*)$") or outfile
end
av.set_num_threads(threads)

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local python = os.getenv("AVIARY_PYTHON") or "/usr/bin/python3"

local cases = {}
-- case(name, aviary_setup, torch_setup, torch_statement, reps, inner, note):
-- aviary_setup() returns the closure to time; the torch statement runs after
-- the torch setup in one Python process; reps are medianed.
local function case(name, av_setup, t_setup, t_stmt, reps, inner, note)
  if filter and not name:find(filter, 1, true) then return end
  cases[#cases + 1] = {name = name, av = av_setup, setup = t_setup, stmt = t_stmt, reps = reps or 7,
                       inner = inner or 1, note = note}
end

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

-- case files: tests/bench/cases_*.lua each return function(case, av) that declares cases
local files = {}
local ls = io.popen("ls '" .. here .. "'/cases_*.lua 2>/dev/null")
for f in ls:lines() do files[#files + 1] = f end
ls:close()
table.sort(files)
for _, f in ipairs(files) do dofile(f)(case, av) end

-- aviary timings
local results = {}
for _, c in ipairs(cases) do
  local stmt = c.av()
  stmt() -- warm up
  local times = {}
  for _ = 1, c.reps do
    collectgarbage()
    local t0 = av.clock()
    for _ = 1, c.inner do stmt() end
    times[#times + 1] = (av.clock() - t0) / c.inner
  end
  results[c.name] = median(times)
  io.stderr:write(("aviary  %-45s %9.3f ms\n"):format(c.name, results[c.name] * 1e3))
end

-- PyTorch timings, one process
local torch_cases = {}
for _, c in ipairs(cases) do
  torch_cases[#torch_cases + 1] = {name = c.name, setup = c.setup, stmt = c.stmt, reps = c.reps, inner = c.inner}
end
local tmp = os.tmpname()
local f = assert(io.open(tmp, "w"))
f:write(cjson.encode(torch_cases))
f:close()
local p = io.popen(("%s '%s/torch_bench.py' '%s' %d"):format(python, here, tmp, threads))
local out = p:read("a")
local ok = p:close()
os.remove(tmp)
local torch_t = ok and cjson.decode(out) or {}
if not ok then io.stderr:write("PyTorch timings failed (is python3-torch installed for " .. python .. "?)\n") end

local function fmt_time(s)
  if not s then return "n/a" end
  if s >= 1 then return ("%.2f s"):format(s) end
  if s >= 1e-3 then return ("%.2f ms"):format(s * 1e3) end
  return ("%.1f µs"):format(s * 1e6)
end
local lines = {
  ("Threads: %d (aviary and PyTorch %s), OPENBLAS_CORETYPE=%s"):format(threads,
    "1.13 from python3-torch", os.getenv("OPENBLAS_CORETYPE") or "unset"),
  "",
  "| op | aviary | PyTorch | ratio (PyTorch / aviary) |",
  "|---|---|---|---|",
}
for _, c in ipairs(cases) do
  local a, t = results[c.name], torch_t[c.name]
  local name = c.name .. (c.note and (" (" .. c.note .. ")") or "")
  lines[#lines + 1] = ("| %s | %s | %s | %s |"):format(name, fmt_time(a), fmt_time(t),
    t and ("%.2fx"):format(t / a) or "n/a")
end
-- peak memory of the golden network's forward+backward, each in a fresh process
if not filter or ("memory"):find(filter, 1, true) then
  local host = arg[-1] or "bin/aviary"
  local function run(cmd)
    local h = io.popen(cmd .. " 2>/dev/null")
    local out = h:read("a")
    h:close()
    local before, peak = out:match("([%d.]+) ([%d.]+)")
    return tonumber(before), tonumber(peak)
  end
  local ab, ap = run(("%s '%s/peak_mem.lua'"):format(host, here))
  local tb, tp = run(("%s '%s/peak_mem.py' %d"):format(python, here, threads))
  if ab and tb then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "| golden network forward+backward, batch 32, 64x64 | aviary | PyTorch | ratio (PyTorch / aviary) |"
    lines[#lines + 1] = "|---|---|---|---|"
    lines[#lines + 1] = ("| peak resident memory of the process | %.0f MB | %.0f MB | %.2fx |"):format(ap, tp, tp / ap)
    lines[#lines + 1] = ("| growth during forward+backward | %.0f MB | %.0f MB | %.2fx |"):format(ap - ab, tp - tb, (tp - tb) / (ap - ab))
  else
    lines[#lines + 1] = ""
    lines[#lines + 1] = "(memory benchmark skipped: the golden network's operators are not all available)"
  end
end
-- peak memory of whole-model jobs, each side in a fresh process
if not filter or ("resnet memory"):find(filter, 1, true) or filter:find("resnet", 1, true) then
  local host = arg[-1] or "bin/aviary"
  local function run(cmd)
    local h = io.popen(cmd .. " 2>/dev/null")
    local out = h:read("a")
    h:close()
    local before, peak = out:match("([%d.]+) ([%d.]+)")
    return tonumber(before), tonumber(peak)
  end
  local rows = {}
  for _, job in ipairs({{"resnet18", "train", "resnet18 training step, batch 16, 112x112"},
                        {"resnet50", "train", "resnet50 training step, batch 16, 112x112"},
                        {"resnet18", "infer", "resnet18 inference, batch 16, 224x224"}}) do
    local _, ap = run(("%s '%s/peak_model.lua' %s %s %d"):format(host, here, job[1], job[2], threads))
    local _, tp = run(("%s '%s/peak_model.py' %s %s %d"):format(python, here, job[1], job[2], threads))
    if ap and tp then
      rows[#rows + 1] = ("| %s: peak resident memory | %.0f MB | %.0f MB | %.2fx |"):format(job[3], ap, tp, tp / ap)
    end
  end
  if #rows > 0 then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "| whole-model job (fresh process each) | aviary | PyTorch | ratio (PyTorch / aviary) |"
    lines[#lines + 1] = "|---|---|---|---|"
    for _, r in ipairs(rows) do lines[#lines + 1] = r end
  end
end
-- the data loader's resident memory across epochs (cases_data.lua made the files)
if not filter or ("data:"):find(filter, 1, true) then
  local root = (os.getenv("TMPDIR") or "/tmp") .. "/aviary_bench_cub/CUB_200_2011/images"
  local h = io.popen(("%s '%s/loader_mem.lua' '%s' 10 2>/dev/null"):format(arg[-1] or "bin/aviary", here, root))
  local out = h:read("a")
  h:close()
  local first, last, peak = out:match("([%d.]+) ([%d.]+) ([%d.]+)")
  if first then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "| data loader, 10 epochs of 320 images, batch 32, 2 workers | after epoch 1 | after epoch 10 | peak |"
    lines[#lines + 1] = "|---|---|---|---|"
    lines[#lines + 1] = ("| resident memory | %.0f MB | %.0f MB | %.0f MB |"):format(first, last, peak)
  end
end
local text = table.concat(lines, "\n")
print(text)
if outfile then
  local o = assert(io.open(outfile, "w"))
  o:write(text, "\n")
  o:close()
end
