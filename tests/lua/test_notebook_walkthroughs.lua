-- The walkthroughs (notebooks/NNN_*.lua) with --quick, in file order, through `aviary notebook run` into a
-- scratch folder: each must run to the end, write an .ipynb that nbformat validates and an HTML page that
-- headless Chromium opens without console errors and with every image decoded. `make notebooks` runs
-- them in full into notebooks/out/.
local nb = require "aviary.notebook"
local U = require "notebook_util"

local out = U.fresh_dir() .. "/notebooks"
local files = nb.list(U.root .. "/notebooks")

if #files == 0 then
  it("no walkthroughs in notebooks/ yet", function() skip("nothing matches notebooks/[0-9][0-9][0-9]_*.lua") end)
end

local failed
for _, path in ipairs(files) do
  local name = path:match("([^/]+)%.lua$")
  describe(name, function()
    local rc, stdout, stderr
    it("also compiles as a plain script (a `return` only in the last cell)", function()
      local chunk, err = loadfile(path)
      assert.truthy(chunk, err)
    end)
    it("runs to the end with --quick", function()
      if os.getenv("AV_SANITIZED") then skip("training under the sanitizer build takes too long; make test runs it") end
      if failed then skip(failed .. " failed before it, and the walkthroughs build on each other") end
      local t0 = os.time()
      rc, stdout, stderr = U.aviary({"notebook", "run", "notebooks/" .. name .. ".lua", "--quick", "--out", out})
      io.stdout:write(("# %s: %d s\n"):format(name, os.time() - t0))
      if rc ~= 0 then failed = name end
      assert.equal(rc, 0, stdout .. stderr:sub(-3000))
    end)
    it("writes an .ipynb that nbformat validates", function()
      if rc ~= 0 then skip("the notebook did not run") end
      U.validate_ipynb(out .. "/" .. name .. ".ipynb")
    end)
    it("writes an HTML page that opens in Chromium without errors, every image decoded", function()
      if rc ~= 0 then skip("the notebook did not run") end
      local brc, r, text = U.browser_check(out .. "/" .. name .. ".html")
      assert.equal(brc, 0, text)
      assert.equal(#r.console_errors + #r.page_errors + #r.failed_requests, 0, text)
      for _, img in ipairs(r.images) do assert.truthy(img.ok, text) end
    end)
  end)
end
