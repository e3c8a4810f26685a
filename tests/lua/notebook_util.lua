-- Helpers shared by the notebook tests (test_notebook.lua, test_notebook_walkthroughs.lua): running the
-- host, nbformat's validator and the headless-Chromium check.
local json = require "aviary.json"
local U = {}

function U.abs(p)
  if p:sub(1, 1) == "/" then return p end
  local cwd = os.getenv("PWD") or io.popen("pwd"):read("l")
  return ((cwd .. "/" .. p):gsub("/%./", "/"):gsub("/%.$", ""))
end
local root = U.abs(av_test.root)
U.root = root

function U.sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
function U.exists(p) return os.execute("test -e " .. U.sh(p)) == true end

-- the host running these tests (bin/aviary, or a build's), so a rebuilt host is the one tested
local host = os.getenv("HOST")
if not host then
  local i = -1
  while arg[i] do host = arg[i]; i = i - 1 end
end
if not host or not host:find("/") then host = root .. "/bin/aviary" end
if host:sub(1, 1) ~= "/" then host = root .. "/" .. host end

local env = "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} AVIARY_NUM_THREADS=2 "

-- runs the host with args in dir; returns the exit status, stdout, stderr
function U.aviary(args, dir, stdin)
  local out, err = U.abs(av_test.tmpname(".out")), U.abs(av_test.tmpname(".err"))
  local parts = {}
  for _, a in ipairs(args) do parts[#parts + 1] = U.sh(a) end
  local cmd = ("cd %s && %s%s %s %s>%s 2>%s"):format(U.sh(dir or root), env, U.sh(host), table.concat(parts, " "),
    stdin and ("<" .. U.sh(stdin) .. " ") or "</dev/null ", U.sh(out), U.sh(err))
  local ok, _, code = os.execute(cmd)
  local function slurp(p)
    local f = io.open(p, "rb")
    local s = f and f:read("a") or ""
    if f then f:close() end
    os.remove(p)
    return s
  end
  return ok and 0 or code, slurp(out), slurp(err)
end

function U.write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

function U.fresh_dir()
  local d = U.abs(av_test.tmpname("_nb"))
  os.execute("mkdir -p " .. U.sh(d))
  return d
end

-- the outputs of each code cell of a written .ipynb, in order
function U.code_cells(ipynb)
  local cells = {}
  for _, c in ipairs(ipynb.cells) do if c.cell_type == "code" then cells[#cells + 1] = c end end
  return cells
end

function U.text_of(v)
  if type(v) == "table" then return table.concat(v) end
  return v or ""
end

function U.validate_ipynb(path)
  if os.execute(av_test.python_bin .. " -c 'import nbformat' >/dev/null 2>&1") ~= true then
    skip("python3-nbformat not installed (make test-deps)")
  end
  local ok, out = av_test.python("-c", "import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))",
    path)
  assert.truthy(ok, "nbformat rejects " .. path .. ":\n" .. out)
end

function U.browser_check(path)
  if os.execute("command -v node >/dev/null 2>&1") ~= true then skip("node not installed (make test-deps)") end
  if not U.exists(root .. "/tools/node/node_modules/playwright-core") then skip("playwright-core missing (make test-deps)") end
  if not U.exists(os.getenv("CHROMIUM") or "/usr/bin/chromium") then skip("chromium not installed (make test-deps)") end
  local p = io.popen("node " .. U.sh(root .. "/tools/node/check_html.js") .. " " .. U.sh(path) .. " 2>&1; echo \"rc=$?\"")
  local text = p:read("a")
  p:close()
  return tonumber(text:match("rc=(%d+)%s*$")), json.decode(text:match("^[^\n]*")), text
end

U.host = host
return U
